"""``geovec eval``: run task specs against a model and write JSON, markdown and figures.

A task spec is ``FAMILY=PATH`` or ``FAMILY=PATH:IMAGES`` (``IMAGES``: the image
folder, when it is not where the dataset keeps it); ``--split`` (default
``test``) picks the split of datasets that have one. ``PATH`` is the dataset as
distributed (see :mod:`..data.layouts`):

=====================================  =============================================
scene_classification=DIR               UC Merced (``UCMerced_LandUse[/Images]``) or
                                       AID: one folder per class
cross_modal_retrieval=JSON[:IMAGES]    RSICD ``dataset_rsicd.json`` (``RSICD_images/``)
                                       or RSITMD ``dataset_RSITMD.json`` (``images/``)
vqa=DIR[:IMAGES]                       RSVQA LR (``LR_split_*``, ``Images_LR/``) or
                                       HR (``USGS_split_*``, ``Data/``)
grounding=DIR[:IMAGES]                 DIOR-RSVG (``Annotations/``, ``JPEGImages/``,
                                       ``train/val/test.txt``)
compositional_retrieval=JSON[:IMAGES]  triplet JSON (training/README.md)
geo_localization=CSV[:IMAGES]          image + lat/lon table (training/README.md)
holdout=CONFIG.yaml                    a training config's spatial test split
=====================================  =============================================
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...backend.errors import InputError
from ..data import formats, layouts
from . import tasks as T
from .report import fmt, plot_task_bars, plot_training_curves

log = logging.getLogger(__name__)
SPEC_KINDS = (*T.FAMILIES, "holdout")
#: a ``:`` that separates PATH from IMAGES (not a Windows drive's ``C:\``)
_IMAGES_SEP = re.compile(r":(?![\\])")


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``FAMILY=PATH[:IMAGES]`` -> (family, path, images or None)."""
    kind, sep, rest = spec.partition("=")
    if not sep or kind not in SPEC_KINDS or not rest:
        raise InputError(f"bad task spec {spec!r}",
                         f"use FAMILY=PATH or FAMILY=PATH:IMAGES with FAMILY one of {list(SPEC_KINDS)}")
    cuts = [m.start() for m in _IMAGES_SEP.finditer(rest) if m.start() != 1]
    if cuts and kind not in ("scene_classification", "holdout"):
        return kind, rest[: cuts[-1]], rest[cuts[-1] + 1 :] or None
    return kind, rest, None


def build_task(spec: str, embedder: Any, *, split: str = "test") -> T.Task:
    """The task of one spec, its dataset read in its distributed layout (images listed, not read)."""
    kind, path, images = parse_spec(spec)
    instr = embedder.instructions
    if kind == "scene_classification":
        return T.scene_classification(layouts.load_scene_classes(path), instr)
    if kind == "cross_modal_retrieval":
        return T.cross_modal_retrieval(layouts.load_caption_dataset(path, images, split=split), instr)
    if kind == "vqa":
        return T.vqa(layouts.load_rsvqa_dataset(path, images, split=split), instr)
    if kind == "grounding":
        return T.grounding(layouts.load_rsvg_dataset(path, images, split=split), instr)
    if kind == "compositional_retrieval":
        return T.compositional_retrieval(formats.load_triplet_json(path, image_dir=images), instr)
    if kind == "geo_localization":
        return T.geo_localization(formats.load_latlon_csv(path, image_dir=images), instr,
                                  embedder.preset.format_latlon)
    raise InputError(f"{kind} is not a retrieval family", "holdout specs are run by run_eval")


def _holdout(config_path: str, embedder: Any) -> dict[str, Any]:
    from ..config import Config
    from ..data.dataset import build_train_data
    from .class_retrieval import class_retrieval

    cfg = Config.from_yaml(config_path)
    image_size = cfg.data.image_size or int(embedder.preset.image_size)
    data = build_train_data(cfg.data, dict(embedder.instructions), image_size)
    split, points, images = data.reported
    res = class_retrieval(embedder, images, [p.label for p in points], data.classes,
                          template=cfg.data.caption_template, groups=[p.fid for p in points])
    return {"family": "scene_classification", "split": split, **res}


def run_eval(embedder: Any, specs: Sequence[str], out_dir: str | Path | None = None, *,
             batch_size: int = 16, train_log: str | Path | None = None, split: str = "test") -> dict[str, Any]:
    """Run every spec; write ``results.json``, ``results.md`` and figures under ``out_dir``.

    Result names are the task directions (``vqa``, ``grounding:region_caption``, ...); a second
    dataset of the same family is told apart by its folder or file name (``vqa@RSVQA_HR``).
    """
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for spec in specs:
        kind, path, _ = parse_spec(spec)
        if kind == "holdout":
            results[f"holdout:{Path(path).stem}"] = _holdout(path, embedder)
            continue
        task = build_task(spec, embedder, split=split)
        for name, r in T.run_task(embedder, task, batch_size=batch_size).items():
            key = name if name not in results else f"{name}@{Path(path).name}"
            results[key] = {**r, "dataset": path, "split": split}
    summary = {"model": getattr(embedder, "checkpoint_id", "?"), "preset": embedder.preset.name, "split": split,
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
        row = [fmt(r.get(c, r.get("chance") if c == "chance_p_at_1" else r.get("n") if c == "n_queries" else "")) for c in COLUMNS]
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
