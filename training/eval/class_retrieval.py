"""Held-out class retrieval: rank each chip against one text prompt per class (P@1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...backend.types import EmbedInput
from .metrics import cluster_bootstrap_ci, per_class_accuracy, precision_at_1


def class_retrieval(
    embedder: Any,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    classes: Sequence[str],
    *,
    template: str = "a satellite image of {label}",
    batch_size: int = 32,
    groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """P@1 of each image against the class prompts (chance = 1 / len(classes)).

    Images use the ``tile`` instruction (as indexed tiles), prompts ``text_query``
    (as search queries), so the number measures what ``geovec search --text`` sees.
    With ``groups`` (the polygon of each chip) the result carries ``p_at_1_ci95``, a bootstrap
    interval that resamples polygons, since chips of one polygon are not independent.
    """
    instr = embedder.instructions
    img_in = [EmbedInput(instruction=instr["tile"], image=im) for im in images]
    txt_in = [EmbedInput(instruction=instr["text_query"], text=template.format(label=c)) for c in classes]
    iv = embedder.encode(img_in, batch_size=batch_size)
    tv = embedder.encode(txt_in, batch_size=batch_size)
    sim = iv @ tv.T
    cls_index = {c: i for i, c in enumerate(classes)}
    positives = [{cls_index[lab]} for lab in labels]
    pred = [classes[int(j)] for j in sim.argmax(axis=1)]
    per_class = per_class_accuracy(pred, labels)
    out = {
        "p_at_1": precision_at_1(sim, positives),
        "balanced_p_at_1": float(np.mean(list(per_class.values()))),
        "chance": 1.0 / len(classes),
        "n": len(labels),
        "per_class": per_class,
        "predicted_counts": {c: pred.count(c) for c in classes},
    }
    if groups is not None:
        correct = [p == t for p, t in zip(pred, labels, strict=True)]
        out["p_at_1_ci95"] = list(cluster_bootstrap_ci(correct, list(groups)))
        out["n_polygons"] = len(set(groups))
    return out
