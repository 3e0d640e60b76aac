"""Retrieval metrics over cosine-similarity matrices (rows: queries, columns: candidates)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ranks_of_positives(sim: np.ndarray, positives: Sequence[set[int]]) -> np.ndarray:
    """0-based rank of the best-ranked positive of each query."""
    order = np.argsort(-sim, axis=1, kind="stable")
    out = np.empty(len(positives), dtype=int)
    for i, pos in enumerate(positives):
        hits = np.nonzero(np.isin(order[i], list(pos)))[0]
        out[i] = int(hits[0]) if len(hits) else sim.shape[1]
    return out


def precision_at_1(sim: np.ndarray, positives: Sequence[set[int]]) -> float:
    """Share of queries whose top candidate is a positive (accuracy for classification)."""
    top = sim.argmax(axis=1)
    return float(np.mean([int(t) in pos for t, pos in zip(top, positives, strict=True)]))


def recall_at(sim: np.ndarray, positives: Sequence[set[int]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k for each k: a query counts when any positive lies in its top k."""
    ranks = ranks_of_positives(sim, positives)
    return {f"R@{k}": float(np.mean(ranks < k)) for k in ks}


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km (WGS84 mean radius)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def per_class_accuracy(pred: Sequence[str], true: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in sorted(set(true)):
        idx = [i for i, t in enumerate(true) if t == c]
        out[c] = float(np.mean([pred[i] == c for i in idx])) if idx else math.nan
    return out


def cluster_bootstrap_ci(correct: Sequence[bool] | np.ndarray, clusters: Sequence[int] | np.ndarray, *,
                         n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean over items that come in correlated clusters.

    Chips from one polygon are near-duplicates, so the interval resamples whole clusters
    (polygons) with replacement, not single chips; with few polygons it is wide, as it should be.
    """
    ok = np.asarray(correct, dtype=float)
    _, cid = np.unique(np.asarray(clusters), return_inverse=True)
    hits = np.bincount(cid, weights=ok)
    sizes = np.bincount(cid).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(sizes), size=(n_boot, len(sizes)))
    means = hits[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)
