"""The six RSMEB task families as retrieval tasks over the loaders in ``data.formats``.

Every task is queries x candidates with a set of positive candidates per query;
the model embeds both with the preset's instructions (the same ``encode`` as the
index) and the metrics come from cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...backend.types import EmbedInput
from ..data.formats import (
    CaptionSample,
    GeoSample,
    GroundingSample,
    SceneSample,
    TripletSample,
    VQASample,
    image_size_of,
    load_image,
)
from .metrics import haversine_km, precision_at_1, ranks_of_positives, recall_at

FAMILIES = ("scene_classification", "cross_modal_retrieval", "compositional_retrieval",
            "vqa", "grounding", "geo_localization")


@dataclass
class RetrievalTask:
    """Queries ranked against candidates; ``positives[i]`` are the right candidates of query i."""

    name: str
    family: str
    queries: list[EmbedInput]
    candidates: list[EmbedInput]
    positives: list[set[int]]
    query_latlon: np.ndarray | None = None  # (n, 2) for geo-localisation
    candidate_latlon: np.ndarray | None = None
    metrics: tuple[str, ...] = ("p_at_1",)
    extra: dict[str, Any] = field(default_factory=dict)


def _instr(preset: Any, key: str, fallback: str) -> str:
    """The preset's instruction for ``key`` (may be empty: plain text), else ``fallback``'s."""
    return str(preset.instructions[key] if key in preset.instructions else preset.instructions[fallback])


def scene_classification(samples: Sequence[SceneSample], preset: Any, *, template: str = "a satellite image of {label}",
                         name: str = "scene_classification") -> RetrievalTask:
    classes = sorted({s.label for s in samples})
    idx = {c: i for i, c in enumerate(classes)}
    q = [EmbedInput(instruction=preset.instructions["tile"], image=load_image(s.path, preset.image_size)) for s in samples]
    c = [EmbedInput(instruction=preset.instructions["text_query"], text=template.format(label=k)) for k in classes]
    return RetrievalTask(name, "scene_classification", q, c, [{idx[s.label]} for s in samples])


def cross_modal_retrieval(samples: Sequence[CaptionSample], preset: Any, *, name: str = "cross_modal_retrieval") -> list[RetrievalTask]:
    """Text -> image and image -> text, each with R@1/5/10; mean recall averages the six."""
    images = [EmbedInput(instruction=preset.instructions["tile"], image=load_image(s.path, preset.image_size)) for s in samples]
    texts, owner = [], []
    for i, s in enumerate(samples):
        for cap in s.captions:
            texts.append(EmbedInput(instruction=preset.instructions["text_query"], text=cap))
            owner.append(i)
    t2i = RetrievalTask(f"{name}:text2image", "cross_modal_retrieval", texts, images, [{o} for o in owner],
                        metrics=("recall",))
    i2t = RetrievalTask(f"{name}:image2text", "cross_modal_retrieval", images, texts,
                        [{j for j, o in enumerate(owner) if o == i} for i in range(len(samples))], metrics=("recall",))
    return [t2i, i2t]


def compositional_retrieval(samples: Sequence[TripletSample], preset: Any, *, name: str = "compositional_retrieval") -> RetrievalTask:
    """Reference image + change text -> target image among all targets."""
    targets = sorted({s.target for s in samples})
    idx = {t: i for i, t in enumerate(targets)}
    q = [EmbedInput(instruction=_instr(preset, "image_query", "tile"), image=load_image(s.reference, preset.image_size), text=s.text)
         for s in samples]
    c = [EmbedInput(instruction=preset.instructions["tile"], image=load_image(t, preset.image_size)) for t in targets]
    return RetrievalTask(name, "compositional_retrieval", q, c, [{idx[s.target]} for s in samples], metrics=("p_at_1", "recall"))


def vqa(samples: Sequence[VQASample], preset: Any, *, name: str = "vqa") -> RetrievalTask:
    """Image + question -> the answer among every distinct answer (P@1)."""
    answers = sorted({s.answer for s in samples})
    idx = {a: i for i, a in enumerate(answers)}
    cache: dict[str, np.ndarray] = {}
    q = []
    for s in samples:
        if s.path not in cache:
            cache[s.path] = load_image(s.path, preset.image_size)
        q.append(EmbedInput(instruction=_instr(preset, "image_query", "tile"), image=cache[s.path], text=s.question))
    c = [EmbedInput(instruction=_instr(preset, "text_doc", "text_query"), text=a) for a in answers]
    return RetrievalTask(name, "vqa", q, c, [{idx[s.answer]} for s in samples])


def grounding(samples: Sequence[GroundingSample], preset: Any, *, name: str = "grounding") -> list[RetrievalTask]:
    """Referring expression -> region (image + bbox), and region -> its caption (P@1 both)."""
    size = preset.image_size
    cache: dict[str, np.ndarray] = {}
    regions = []
    for s in samples:
        if s.path not in cache:
            cache[s.path] = load_image(s.path, size)
        w, h = image_size_of(s.path)
        sx, sy = size / w, size / h
        box = (s.bbox[0] * sx, s.bbox[1] * sy, s.bbox[2] * sx, s.bbox[3] * sy)
        regions.append(EmbedInput(instruction=preset.instructions["region_query"], image=cache[s.path], bbox=box))
    texts = [EmbedInput(instruction=preset.instructions["text_query"], text=s.expression) for s in samples]
    same = [{j for j, t in enumerate(samples) if t.expression == s.expression} for s in samples]
    return [
        RetrievalTask(f"{name}:referring_expression", "grounding", texts, regions, same),
        RetrievalTask(f"{name}:region_caption", "grounding", regions, texts, same),
    ]


def geo_localization(samples: Sequence[GeoSample], preset: Any, *, name: str = "geo_localization") -> RetrievalTask:
    """Image -> its location text (preset's lat/lon text [+ the row's text]) among all rows.

    Metrics: P@1 and the median great-circle error (km) of the top-1 location.
    """
    q = [EmbedInput(instruction=preset.instructions["tile"], image=load_image(s.path, preset.image_size)) for s in samples]
    c = [EmbedInput(instruction=_instr(preset, "text_doc", "text_query"),
                    text=f"{s.text} {preset.format_latlon(s.lat, s.lon)}".strip()) for s in samples]
    ll = np.array([[s.lat, s.lon] for s in samples], dtype=float)
    return RetrievalTask(name, "geo_localization", q, c, [{i} for i in range(len(samples))],
                         query_latlon=ll, candidate_latlon=ll, metrics=("p_at_1", "km"))


def run_task(embedder: Any, task: RetrievalTask, *, batch_size: int = 16) -> dict[str, Any]:
    """Embed, rank and score one task."""
    qv = embedder.encode(task.queries, batch_size=batch_size)
    cv = embedder.encode(task.candidates, batch_size=batch_size)
    sim = qv @ cv.T
    out: dict[str, Any] = {"family": task.family, "n_queries": len(task.queries), "n_candidates": len(task.candidates),
                           "chance_p_at_1": float(np.mean([len(p) / len(task.candidates) for p in task.positives]))}
    if "p_at_1" in task.metrics:
        out["p_at_1"] = precision_at_1(sim, task.positives)
    if "recall" in task.metrics:
        out.update(recall_at(sim, task.positives))
        out["mean_recall"] = float(np.mean([out["R@1"], out["R@5"], out["R@10"]]))
    if "km" in task.metrics and task.query_latlon is not None and task.candidate_latlon is not None:
        top = sim.argmax(axis=1)
        err = haversine_km(task.query_latlon[:, 0], task.query_latlon[:, 1],
                           task.candidate_latlon[top, 0], task.candidate_latlon[top, 1])
        out["median_km"] = float(np.median(err))
    out["median_rank"] = float(np.median(ranks_of_positives(sim, task.positives)) + 1)
    return out
