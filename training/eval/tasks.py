"""The six RSMEB task families as retrieval over embedded sides.

A task has *sides* (lists of :class:`Item`: an instruction plus text, an image
path read lazily, a box, a location) and *directions* (query side -> candidate
side, with the positive candidates of each query). Each side is embedded once,
in batches whose images are read only for that batch, and each direction is
ranked in row chunks (:mod:`.ranking`), so a 40k x 40k task never holds 40k
images or a 40k x 40k matrix.

Instructions are the model's own (``embedder.instructions``): ``tile`` for
candidate images, ``text_query`` for caption queries, ``classification``,
``vqa`` (with its ``{question}``), ``referring_query`` and ``region_query``
for grounding, ``image_query`` for composed queries, ``text_doc`` for text
candidates (answers, class names, locations).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...backend.types import Box, EmbedInput
from ..data.formats import (
    CaptionSample,
    GeoSample,
    GroundingSample,
    SceneSample,
    TripletSample,
    VQASample,
    read_image,
)
from .metrics import haversine_km
from .ranking import rank_positives, summarise

log = logging.getLogger(__name__)
FAMILIES = ("scene_classification", "cross_modal_retrieval", "compositional_retrieval",
            "vqa", "grounding", "geo_localization")


@dataclass(frozen=True)
class Item:
    """One input to embed; ``image`` is a path read when its batch is embedded."""

    instruction: str
    text: str | None = None
    image: str | None = None
    bbox: Box | None = None  # pixels of the image file as stored
    latlon: tuple[float, float] | None = None


@dataclass
class Direction:
    """Rank side ``candidates`` for each item of side ``queries``; ``positives[i]`` are query i's right ones."""

    name: str
    queries: str
    candidates: str
    positives: list[set[int]]
    metrics: tuple[str, ...] = ("p_at_1",)
    latlon: tuple[np.ndarray, np.ndarray] | None = None  # (queries, candidates) for geo-localisation


@dataclass
class Task:
    family: str
    sides: dict[str, list[Item]]
    directions: list[Direction]
    extra: dict[str, Any] = field(default_factory=dict)


def scene_classification(samples: Sequence[SceneSample], instr: Mapping[str, str], *,
                         template: str = "a satellite image of {label}") -> Task:
    """Each image against one text per class (P@1 = accuracy)."""
    classes = sorted({s.label for s in samples})
    idx = {c: i for i, c in enumerate(classes)}
    images = [Item(instr["classification"], image=s.path) for s in samples]
    labels = [Item(instr["text_doc"], text=template.format(label=c)) for c in classes]
    return Task("scene_classification", {"images": images, "classes": labels},
                [Direction("scene_classification", "images", "classes", [{idx[s.label]} for s in samples])],
                {"classes": classes})


def cross_modal_retrieval(samples: Sequence[CaptionSample], instr: Mapping[str, str]) -> Task:
    """Text -> image and image -> text (R@1/5/10, mean recall) over one embedding of each side."""
    images = [Item(instr["tile"], image=s.path) for s in samples]
    texts, owner = [], []
    for i, s in enumerate(samples):
        for cap in s.captions:
            texts.append(Item(instr["text_query"], text=cap))
            owner.append(i)
    of_image: list[set[int]] = [set() for _ in samples]
    for j, o in enumerate(owner):
        of_image[o].add(j)
    return Task("cross_modal_retrieval", {"images": images, "texts": texts}, [
        Direction("cross_modal_retrieval:text2image", "texts", "images", [{o} for o in owner], ("recall",)),
        Direction("cross_modal_retrieval:image2text", "images", "texts", of_image, ("recall",)),
    ])


def compositional_retrieval(samples: Sequence[TripletSample], instr: Mapping[str, str]) -> Task:
    """Reference image + change text -> the target among every distinct target."""
    targets = sorted({s.target for s in samples})
    idx = {t: i for i, t in enumerate(targets)}
    queries = [Item(instr["image_query"], image=s.reference, text=s.text) for s in samples]
    return Task("compositional_retrieval", {"queries": queries, "targets": [Item(instr["tile"], image=t) for t in targets]},
                [Direction("compositional_retrieval", "queries", "targets", [{idx[s.target]} for s in samples],
                           ("p_at_1", "recall"))])


def vqa(samples: Sequence[VQASample], instr: Mapping[str, str]) -> Task:
    """Image + the ``vqa`` instruction holding the question -> the answer among every distinct answer."""
    answers = sorted({s.answer for s in samples})
    idx = {a: i for i, a in enumerate(answers)}
    queries = [Item(instr["vqa"].replace("{question}", s.question), image=s.path) for s in samples]
    return Task("vqa", {"questions": queries, "answers": [Item(instr["text_doc"], text=a) for a in answers]},
                [Direction("vqa", "questions", "answers", [{idx[s.answer]} for s in samples])],
                {"question_types": sorted({s.qtype for s in samples})})


def grounding(samples: Sequence[GroundingSample], instr: Mapping[str, str]) -> Task:
    """Referring expression -> its region (image + box), and region -> its expression (P@1 both)."""
    regions = [Item(instr["region_query"], image=s.path, bbox=s.bbox) for s in samples]
    texts = [Item(instr["referring_query"], text=s.expression) for s in samples]
    by_text: dict[str, set[int]] = {}
    for j, s in enumerate(samples):
        by_text.setdefault(s.expression, set()).add(j)
    same = [by_text[s.expression] for s in samples]
    return Task("grounding", {"regions": regions, "expressions": texts}, [
        Direction("grounding:referring_expression", "expressions", "regions", same),
        Direction("grounding:region_caption", "regions", "expressions", same),
    ])


def geo_localization(samples: Sequence[GeoSample], instr: Mapping[str, str], format_latlon: Any) -> Task:
    """Image -> its location text among all rows; P@1 and the median km error of the top-1 location."""
    images = [Item(instr["tile"], image=s.path) for s in samples]
    places = [Item(instr["text_doc"], text=f"{s.text} {format_latlon(s.lat, s.lon)}".strip()) for s in samples]
    ll = np.array([[s.lat, s.lon] for s in samples], dtype=float)
    return Task("geo_localization", {"images": images, "places": places},
                [Direction("geo_localization", "images", "places", [{i} for i in range(len(samples))],
                           ("p_at_1", "km"), latlon=(ll, ll))])


# ---------------------------------------------------------------- embedding and scoring


def embed_items(embedder: Any, items: Sequence[Item], *, batch_size: int = 16) -> np.ndarray:
    """(n, dim) float32; images are read batch by batch (each file once per batch) and dropped after.

    Images go to the model as stored (boxes in their pixels): the model's own image policy sizes them.
    """
    out = np.zeros((len(items), embedder.dim), dtype=np.float32)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        cache = {p: read_image(p) for p in dict.fromkeys(it.image for it in batch if it.image)}
        inputs = [EmbedInput(instruction=it.instruction, image=cache[it.image] if it.image else None, bbox=it.bbox,
                             latlon=it.latlon, text=it.text) for it in batch]
        out[start : start + len(batch)] = embedder.encode(inputs, batch_size=batch_size)
    return out


def score(direction: Direction, qv: np.ndarray, cv: np.ndarray) -> dict[str, Any]:
    """The metrics of one direction from its two sides' vectors."""
    ranking = rank_positives(qv, cv, direction.positives)
    s = summarise(ranking, len(cv), direction.positives)
    out: dict[str, Any] = {"n_queries": len(qv), "n_candidates": len(cv), "chance_p_at_1": s["chance_p_at_1"],
                           "median_rank": s["median_rank"]}
    if "p_at_1" in direction.metrics:
        out["p_at_1"] = s["p_at_1"]
    if "recall" in direction.metrics:
        out.update({k: s[k] for k in ("R@1", "R@5", "R@10")})
        out["mean_recall"] = float(np.mean([s["R@1"], s["R@5"], s["R@10"]]))
    if "km" in direction.metrics and direction.latlon is not None:
        q_ll, c_ll = direction.latlon
        top = c_ll[ranking.top1]
        out["median_km"] = float(np.median(haversine_km(q_ll[:, 0], q_ll[:, 1], top[:, 0], top[:, 1])))
    return out


def run_task(embedder: Any, task: Task, *, batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """Embed each side once, then score every direction; {direction name: metrics}."""
    vectors = {}
    for name, items in task.sides.items():
        log.info("%s: embedding %d %s", task.family, len(items), name)
        vectors[name] = embed_items(embedder, items, batch_size=batch_size)
    return {d.name: {"family": task.family, **score(d, vectors[d.queries], vectors[d.candidates])}
            for d in task.directions}
