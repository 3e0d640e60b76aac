"""Light classifiers over embeddings, and cross-validation with whole spatial blocks held out.

* :class:`Prototypes`: one unit-length mean vector per class; score = cosine.
* :class:`Logistic`: multinomial logistic regression with L2 (full-batch L-BFGS from scipy).
* :class:`StandardLogistic`: the same on standardised features (mean 0, variance 1 per
  dimension, from the training set) with inverse regularisation strength ``C`` as in
  scikit-learn (``sum of weighted losses / mean weight + |w|^2 / (2 C)``), class-balanced.
* :class:`KNearest`: majority vote of the ``k`` most cosine-similar training vectors.

All take L2-normalised vectors and return an (n, classes) score matrix. :data:`CANDIDATES`
names every configuration (``"logistic_std C=1"``, ``"knn k=5"``); a method family
(``logistic_std``) stands for all its configurations (see :mod:`.selection`).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InputError
from .tiles import normalise

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SoftmaxFit:
    """Weights of a fitted softmax regression and how the optimiser ended."""

    w: np.ndarray  # (dim, classes) float32
    b: np.ndarray  # (classes,) float32
    absent: np.ndarray  # (classes,) bool: classes without a training example (they never win)
    converged: bool
    iterations: int
    message: str


def softmax_regression(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, *, max_iter: int = 100,
                       tol: float = 1e-6) -> SoftmaxFit:
    """Class-balanced multinomial logistic regression by L-BFGS (scipy, float64).

    Minimises ``sum_i v_i CE_i / sum_i v_i + l2 |w|^2`` with ``v_i`` the balanced weight of
    ``y_i``'s class (n / (classes present x class count)); absent classes never win. The
    result says whether the optimiser converged (gradient below ``tol`` or no further
    decrease) within ``max_iter`` steps; a fit that did not is logged as a warning.
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n, d = x.shape
    k = n_classes
    counts = np.bincount(y, minlength=k).astype(np.float64)
    absent = counts == 0
    sw = (counts.sum() / (np.maximum(counts, 1) * (~absent).sum()))[y]
    sw /= sw.sum()
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        z = x @ w + b
        z[:, absent] = -1e30
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        f = -float((sw * logp[np.arange(n), y]).sum()) + l2 * float((w * w).sum())
        g = sw[:, None] * (np.exp(logp) - onehot)
        return f, np.concatenate([(x.T @ g + 2.0 * l2 * w).ravel(), g.sum(axis=0)])

    # one BLAS thread: on these small problems scipy's threaded BLAS calls cost more than the work (~40x
    # slower on 2 busy cores)
    with threadpool_limits(1, user_api="blas"):
        res = minimize(fg, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12, "maxcor": 10})
    theta = res.x
    fit = SoftmaxFit(theta[: d * k].reshape(d, k).astype(np.float32), theta[d * k:].astype(np.float32), absent,
                     bool(res.success), int(res.nit), str(res.message))
    if not fit.converged:
        log.warning("logistic regression (%d examples, %d dims) did not converge in %d steps: %s",
                    n, d, fit.iterations, fit.message)
    return fit


def _probabilities(z: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Softmax of the logits ``z`` (n, classes); classes ``absent`` from the training set get 0."""
    z[:, absent] = -1e9
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return np.asarray(p / p.sum(axis=1, keepdims=True))


class Logistic:
    """Multinomial logistic regression, class-balanced, L2 weight ``l2``; scores are probabilities."""

    def __init__(self, l2: float = 1e-3, temperature: float = 0.05, max_iter: int = 100) -> None:
        self.l2, self.temperature, self.max_iter = l2, temperature, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> Logistic:
        self.fit_result = softmax_regression(np.asarray(x) / self.temperature, y, n_classes, self.l2,
                                             max_iter=self.max_iter)
        self.b, self.absent = self.fit_result.b, self.fit_result.absent
        self.w = self.fit_result.w / self.temperature  # unit vectors: the logits were scaled up
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return _probabilities(x @ self.w + self.b, self.absent)


class StandardLogistic:
    """Class-balanced multinomial logistic regression on standardised features; ``C`` as in scikit-learn."""

    def __init__(self, c: float = 1.0, max_iter: int = 200) -> None:
        self.c, self.max_iter = c, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> StandardLogistic:
        self.mu = x.mean(axis=0)
        self.sd = x.std(axis=0) + 1e-6
        self.fit_result = softmax_regression((x - self.mu) / self.sd, y, n_classes, 1.0 / (2.0 * self.c * len(y)),
                                             max_iter=self.max_iter)
        self.w, self.b, self.absent = self.fit_result.w, self.fit_result.b, self.fit_result.absent
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return _probabilities(((x - self.mu) / self.sd) @ self.w + self.b, self.absent)


class KNearest:
    """Vote of the ``k`` nearest training vectors (cosine); score = votes/k, ties to the more similar."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> KNearest:
        self.x, self.y, self.n = np.asarray(x, np.float32), np.asarray(y), n_classes
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        k = min(self.k, len(self.x))
        out = np.zeros((len(x), self.n), np.float32)
        for s in range(0, len(x), 8192):  # bounded memory on a large index
            sim = np.asarray(x[s:s + 8192], np.float32) @ self.x.T
            near = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1] else np.argsort(-sim, axis=1)
            rows = np.arange(len(sim))[:, None]
            np.add.at(out[s:s + 8192], (rows, self.y[near]), 1.0 / k + 1e-4 * sim[rows, near])
        return out


#: Every classifier configuration by name (the family is the part before the space).
CANDIDATES: dict[str, Callable[[], Classifier]] = {
    "prototype": Prototypes,
    "logistic": Logistic,
    **{f"logistic_std C={c:g}": (lambda c=c: StandardLogistic(c)) for c in (0.01, 0.1, 1.0, 10.0)},  # type: ignore[misc]
    **{f"knn k={k}": (lambda k=k: KNearest(k)) for k in (1, 5)},  # type: ignore[misc]
}
#: Method families a request may name (``auto`` = all of them).
FAMILIES = ("prototype", "logistic", "logistic_std", "knn")


def candidates(method: str) -> list[str]:
    """The configurations ``method`` (``auto``, a family, or one configuration) stands for."""
    if method == "auto":
        return list(CANDIDATES)
    if method in CANDIDATES:
        return [method]
    got = [n for n in CANDIDATES if n.split(" ")[0] == method]
    if not got:
        raise InputError(f"unknown classifier {method!r}", f"use one of {list(FAMILIES)} or auto")
    return got


def make(method: str) -> Classifier:
    if method not in CANDIDATES:
        raise InputError(f"unknown classifier {method!r}", f"use one of {list(CANDIDATES)}")
    return CANDIDATES[method]()


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
