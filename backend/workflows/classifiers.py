"""Light classifiers over embeddings, and cross-validation with whole spatial blocks held out.

* :class:`Prototypes`: one unit-length mean vector per class; score = cosine.
* :class:`Logistic`: multinomial logistic regression with L2 (full-batch L-BFGS in torch).

Both take L2-normalised vectors and return an (n, classes) score matrix.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..errors import InputError
from .tiles import normalise


class Classifier(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> Classifier: ...
    def scores(self, x: np.ndarray) -> np.ndarray: ...


class Prototypes:
    """Nearest class mean (cosine). Classes without examples never win."""

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> Prototypes:
        self.centres = np.zeros((n_classes, x.shape[1]), np.float32)
        self.present = np.zeros(n_classes, dtype=bool)
        for c in range(n_classes):
            members = x[y == c]
            if len(members):
                self.centres[c] = members.mean(axis=0)
                self.present[c] = True
        self.centres = normalise(self.centres)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        s = x @ self.centres.T
        s[:, ~self.present] = -2.0
        return s


class Logistic:
    """Multinomial logistic regression, class-balanced, L2 weight ``l2``; scores are probabilities."""

    def __init__(self, l2: float = 1e-3, temperature: float = 0.05, max_iter: int = 100) -> None:
        self.l2, self.temperature, self.max_iter = l2, temperature, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> Logistic:
        import torch

        xt = torch.as_tensor(x, dtype=torch.float32) / self.temperature  # unit vectors: scale up the logits
        yt = torch.as_tensor(y, dtype=torch.long)
        counts = torch.bincount(yt, minlength=n_classes).float()
        weight = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
        w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
        b = torch.zeros(n_classes, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe")
        absent = counts == 0

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = (xt @ w + b).masked_fill(absent, -1e9)
            loss = torch.nn.functional.cross_entropy(logits, yt, weight=weight) + self.l2 * (w * w).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.w = w.detach().numpy() / self.temperature
        self.b = b.detach().numpy()
        self.absent = absent.numpy()
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.w + self.b
        z[:, self.absent] = -1e9
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return np.asarray(p / p.sum(axis=1, keepdims=True))


METHODS = {"prototype": Prototypes, "logistic": Logistic}


def make(method: str) -> Classifier:
    if method not in METHODS:
        raise InputError(f"unknown classifier {method!r}", f"use one of {sorted(METHODS)} or auto")
    return METHODS[method]()  # type: ignore[return-value]


def block_ids(lat: np.ndarray, lon: np.ndarray, block_km: float) -> np.ndarray:
    """Integer id of the ``block_km`` square (equirectangular about the mean latitude) of each point."""
    lat0 = float(np.mean(lat)) if len(lat) else 0.0
    ky = 111.32
    kx = 111.32 * max(math.cos(math.radians(lat0)), 1e-6)
    bx = np.floor(np.asarray(lon) * kx / block_km).astype(np.int64)
    by = np.floor(np.asarray(lat) * ky / block_km).astype(np.int64)
    keys = {k: i for i, k in enumerate(sorted(set(zip(bx.tolist(), by.tolist(), strict=True))))}
    return np.array([keys[k] for k in zip(bx.tolist(), by.tolist(), strict=True)], dtype=np.int64)


def assign_folds(blocks: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of every item: whole blocks, shuffled, dealt round-robin (fewer folds than blocks never)."""
    uniq = np.unique(blocks)
    order = np.random.default_rng(seed).permutation(uniq)
    k = min(folds, len(uniq))
    fold_of = {int(b): i % k for i, b in enumerate(order.tolist())}
    return np.array([fold_of[int(b)] for b in blocks.tolist()], dtype=np.int64)


def cross_validate(x: np.ndarray, y: np.ndarray, fold: np.ndarray, n_classes: int, method: str, *,
                   limit: Callable[[np.ndarray], np.ndarray] | None = None
                   ) -> tuple[float, dict[int, float], np.ndarray]:
    """Held-out accuracy with each fold held out in turn; (overall, per class, predictions).

    ``limit(train_mask)`` may shrink each fold's training set (all items are still tested when held out).
    """
    pred = np.full(len(y), -1, dtype=np.int64)
    for f in np.unique(fold).tolist():
        test = fold == f
        train = ~test if limit is None else limit(~test)
        if not train.any() or len(np.unique(y[train])) < 2:
            continue
        clf = make(method).fit(x[train], y[train], n_classes)
        pred[test] = clf.scores(x[test]).argmax(axis=1)
    tested = pred >= 0
    if not tested.any():
        return float("nan"), {}, pred
    acc = float((pred[tested] == y[tested]).mean())
    per: dict[int, list[bool]] = defaultdict(list)
    for p, t in zip(pred[tested].tolist(), y[tested].tolist(), strict=True):
        per[t].append(p == t)
    return acc, {c: float(np.mean(v)) for c, v in sorted(per.items())}, pred
