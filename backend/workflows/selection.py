"""Choosing a few-shot classifier by spatial-block cross-validation, and an honest accuracy for the choice.

Each candidate configuration (:data:`.classifiers.CANDIDATES`) gets its held-out accuracy
over the same folds of whole spatial blocks; the best one classifies the map. The best
of several accuracies measured on the same folds is optimistic, so when there is a choice
the reported accuracy is that of the whole procedure, by nested cross-validation: for
each outer fold the candidates are compared by an inner cross-validation over the
blocks of the outer training set only, the inner winner is fitted on that training set,
and the outer fold (never seen by the choice) scores it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import classifiers


@dataclass
class Selection:
    """The chosen configuration and the accuracies behind it."""

    method: str
    accuracy: dict[str, float] = field(default_factory=dict)  # candidate -> held-out accuracy (same folds)
    nested: float | None = None  # the choose-then-fit procedure's outer-fold accuracy (several candidates)
    per_class: dict[int, float] = field(default_factory=dict)
    outer_choices: list[str] = field(default_factory=list)


def _per_class(pred: np.ndarray, y: np.ndarray) -> dict[int, float]:
    per: dict[int, list[bool]] = defaultdict(list)
    for p, t in zip(pred.tolist(), y.tolist(), strict=True):
        if p >= 0:
            per[t].append(p == t)
    return {c: float(np.mean(v)) for c, v in sorted(per.items())}


def select(x: np.ndarray, y: np.ndarray, fold: np.ndarray, blocks: np.ndarray, n_classes: int, names: list[str],
           *, folds: int, seed: int, limit: Callable[[np.ndarray], np.ndarray] | None = None) -> Selection:
    """Compare ``names`` over ``fold`` (whole ``blocks``), choose the best, and measure the choice (nested CV).

    ``limit(train_mask)`` may shrink each outer fold's training set (the inner folds split what is left).
    """
    sel = Selection(method=names[0])
    best = -1.0
    preds: dict[str, np.ndarray] = {}
    for m in names:
        acc, _, pred = classifiers.cross_validate(x, y, fold, n_classes, m, limit=limit)
        sel.accuracy[m] = acc
        preds[m] = pred
        if acc > best:
            best, sel.method = acc, m
    if len(names) == 1:
        sel.per_class = _per_class(preds[sel.method], y)
        return sel
    pred = np.full(len(y), -1, dtype=np.int64)
    for f in np.unique(fold).tolist():
        test = fold == f
        train = ~test if limit is None else limit(~test)
        tr = np.flatnonzero(train)
        if not len(tr) or len(np.unique(y[tr])) < 2:
            continue
        inner = classifiers.assign_folds(blocks[tr], folds, seed)
        choice = names[0]
        if len(np.unique(inner)) >= 2:
            inner_best = -1.0
            for m in names:
                acc, _, _ = classifiers.cross_validate(x[tr], y[tr], inner, n_classes, m)
                if acc > inner_best:
                    inner_best, choice = acc, m
        sel.outer_choices.append(choice)
        pred[test] = classifiers.make(choice).fit(x[tr], y[tr], n_classes).scores(x[test]).argmax(axis=1)
    tested = pred >= 0
    if tested.any():
        sel.nested = float((pred[tested] == y[tested]).mean())
        sel.per_class = _per_class(pred, y)
    return sel
