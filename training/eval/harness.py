"""``geovec eval``: run task specs against a model and write JSON, markdown and figures.

A task spec is ``FAMILY=PATH``:

==========================  =====================================================
scene_classification=DIR    UC Merced / AID folder (``DIR/<class>/<image>``)
cross_modal_retrieval=JSON  RSICD / RSITMD ``dataset_*.json`` (test split if any)
compositional_retrieval=J   triplet JSON (reference, text, target)
vqa=DIR                     RSVQA folder: ``*questions.json``, ``*answers.json``,
                            ``*images.json`` and ``Images*/`` (``<img_id>.tif``)
grounding=DIR               DIOR-RSVG ``Annotations/`` (images in ``../JPEGImages``)
geo_localization=CSV        image + lat/lon table
holdout=CONFIG.yaml         a training config's spatial hold-out, class retrieval
==========================  =====================================================
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...backend.errors import InputError, NotFoundError
from ..data import formats
from . import tasks as T
from .report import _fmt, plot_task_bars, plot_training_curves

log = logging.getLogger(__name__)
SPEC_KINDS = (*T.FAMILIES, "holdout")


def parse_spec(spec: str) -> tuple[str, str]:
    kind, sep, path = spec.partition("=")
    if not sep or kind not in SPEC_KINDS or not path:
        raise InputError(f"bad task spec {spec!r}", f"use FAMILY=PATH with FAMILY one of {list(SPEC_KINDS)}")
    return kind, path


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise NotFoundError(f"no {pattern} in {folder}", "pass the dataset folder as distributed")
    return found[0]


def build_tasks(spec: str, preset: Any) -> list[T.RetrievalTask]:
    kind, path = parse_spec(spec)
    p = Path(path)
    if kind == "scene_classification":
        return [T.scene_classification(formats.load_scene_folder(p), preset)]
    if kind == "cross_modal_retrieval":
        captions = formats.load_caption_json(p)
        test = [s for s in captions if s.split == "test"]
        return T.cross_modal_retrieval(test or captions, preset)
    if kind == "compositional_retrieval":
        return [T.compositional_retrieval(formats.load_triplet_json(p), preset)]
    if kind == "vqa":
        images_dir = next((d for d in sorted(p.glob("Images*")) if d.is_dir()), p)
        samples = formats.load_rsvqa(_one(p, "*questions.json"), _one(p, "*answers.json"), _one(p, "*images.json"),
                                     image_dir=images_dir)
        return [T.vqa(samples, preset)]
    if kind == "grounding":
        return T.grounding(formats.load_rsvg_xml(p), preset)
    if kind == "geo_localization":
        return [T.geo_localization(formats.load_latlon_csv(p), preset)]
    raise InputError(f"{kind} is not a retrieval family", "holdout specs are run by run_eval")


def _holdout(config_path: str, embedder: Any) -> dict[str, Any]:
    from ..config import Config
    from ..data.dataset import build_train_data
    from .class_retrieval import class_retrieval

    cfg = Config.from_yaml(config_path)
    image_size = cfg.data.image_size or int(embedder.preset.image_size)
    data = build_train_data(cfg.data, dict(embedder.preset.instructions), image_size)
    res = class_retrieval(embedder, data.val_images, [p.label for p in data.val_points], data.classes,
                          template=cfg.data.caption_template)
    return {"family": "scene_classification", **res}


def run_eval(embedder: Any, specs: Sequence[str], out_dir: str | Path | None = None, *,
             batch_size: int = 16, train_log: str | Path | None = None) -> dict[str, Any]:
    """Run every spec; write ``results.json``, ``results.md`` and figures under ``out_dir``."""
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for spec in specs:
        kind, path = parse_spec(spec)
        if kind == "holdout":
            results[f"holdout:{Path(path).stem}"] = _holdout(path, embedder)
            continue
        for task in build_tasks(spec, embedder.preset):
            log.info("task %s: %d queries x %d candidates", task.name, len(task.queries), len(task.candidates))
            results[task.name] = T.run_task(embedder, task, batch_size=batch_size)
    summary = {"model": getattr(embedder, "checkpoint_id", "?"), "preset": embedder.preset.name,
               "wall_s": time.perf_counter() - t0, "tasks": results}
    if out_dir is not None:
        write_eval_report(summary, out_dir, train_log=train_log)
    return summary


HEADLINE = ("p_at_1", "mean_recall")
COLUMNS = ("p_at_1", "R@1", "R@5", "R@10", "mean_recall", "median_km", "chance_p_at_1", "n_queries")


def write_eval_report(summary: dict[str, Any], out_dir: str | Path, *, train_log: str | Path | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "md": out / "results.md"}
    files["json"].write_text(json.dumps(summary, indent=2, default=str))
    tasks = summary["tasks"]
    lines = [f"# GeoVec evaluation: `{summary['model']}` (preset {summary['preset']})", "",
             "| task | family | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for name, r in tasks.items():
        row = [_fmt(r.get(c, r.get("chance") if c == "chance_p_at_1" else r.get("n") if c == "n_queries" else "")) for c in COLUMNS]
        lines.append(f"| {name} | {r.get('family', '')} | " + " | ".join(row) + " |")
    if tasks:
        files["bars"] = plot_task_bars(tasks, out / "figures" / "tasks.png", HEADLINE)
        lines += ["", "![per-task](figures/tasks.png)"]
    if train_log:
        curves = plot_training_curves(train_log, out / "figures" / "training_curves.png")
        if curves:
            files["curves"] = curves
            lines += ["", "![training curves](figures/training_curves.png)"]
    files["md"].write_text("\n".join(lines) + "\n")
    return files
