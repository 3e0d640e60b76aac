"""Rank every query against every candidate in row chunks: memory O(chunk x candidates), never n x n.

The rank of a query is the 0-based position of its best-ranked positive in the
candidates sorted by descending cosine similarity, ties broken by candidate
index (what a stable sort gives), so the figures equal a full ``argsort`` while
only ``rows x candidates`` similarities exist at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: similarities held at once (float32): 16M = 64 MiB
CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Ranking:
    """Per query: rank of the best positive (0 = top), the top-1 candidate and the top-k candidates."""

    ranks: np.ndarray  # (n,) int64
    top1: np.ndarray  # (n,) int64
    topk: np.ndarray  # (n, k) int64, best first


def _positive_arrays(positives: Sequence[Sequence[int] | set[int]], n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR form of the positive sets (sorted indices per query)."""
    lengths = np.fromiter((len(p) for p in positives), dtype=np.int64, count=len(positives))
    flat = np.fromiter((j for p in positives for j in sorted(p)), dtype=np.int64, count=int(lengths.sum()))
    if flat.size and (flat.min() < 0 or flat.max() >= n_candidates):
        raise ValueError(f"positive index out of range [0, {n_candidates})")
    if (lengths == 0).any():
        raise ValueError(f"query {int(np.argmax(lengths == 0))} has no positive candidate")
    return np.concatenate([[0], np.cumsum(lengths)]), flat


def rank_positives(queries: np.ndarray, candidates: np.ndarray, positives: Sequence[Sequence[int] | set[int]],
                   *, k: int = 10, chunk_elements: int = CHUNK_ELEMENTS) -> Ranking:
    """Rank ``candidates`` for every row of ``queries`` (both L2-normalised float32) in chunks of rows.

    Args:
        queries: (n, dim) query vectors.
        candidates: (m, dim) candidate vectors.
        positives: per query, the indices of its right candidates (at least one).
        k: length of the returned top-k lists (capped at m).
        chunk_elements: similarities computed at once; rows per chunk = chunk_elements // m.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    c = np.ascontiguousarray(candidates, dtype=np.float32)
    n, m = q.shape[0], c.shape[0]
    if len(positives) != n:
        raise ValueError(f"{len(positives)} positive sets for {n} queries")
    indptr, flat = _positive_arrays(positives, m)
    k = min(k, m)
    rows = max(1, chunk_elements // max(m, 1))
    ranks = np.empty(n, dtype=np.int64)
    top1 = np.empty(n, dtype=np.int64)
    topk = np.empty((n, k), dtype=np.int64)
    cols = np.arange(m)
    import torch

    for start in range(0, n, rows):
        stop = min(n, start + rows)
        sim = q[start:stop] @ c.T  # (rows, m)
        local = np.arange(stop - start)
        # best positive of each row: highest score, lowest index among equal scores
        seg = indptr[start : stop + 1] - indptr[start]
        pos_idx = flat[indptr[start] : indptr[stop]]
        owner = np.repeat(local, np.diff(seg))
        pos_score = sim[owner, pos_idx]
        best_score = np.full(stop - start, -np.inf, dtype=np.float32)
        np.maximum.at(best_score, owner, pos_score)
        best_idx = np.full(stop - start, m, dtype=np.int64)
        hit = pos_score == best_score[owner]
        np.minimum.at(best_idx, owner[hit], pos_idx[hit])
        above = (sim > best_score[:, None]).sum(axis=1)
        tied_before = ((sim == best_score[:, None]) & (cols[None, :] < best_idx[:, None])).sum(axis=1)
        ranks[start:stop] = above + tied_before
        part_scores_t, part_t = torch.from_numpy(sim).topk(k, dim=1)  # ~15x numpy's argpartition on CPU
        part, part_scores = part_t.numpy(), part_scores_t.numpy()
        order = np.lexsort((part, -part_scores), axis=1)  # by score, then by index
        topk[start:stop] = np.take_along_axis(part, order, axis=1)  # ties at the k-th place: any of them
        top1[start:stop] = sim.argmax(axis=1)  # the lowest index among equal best scores
    return Ranking(ranks, top1, topk)


def summarise(ranking: Ranking, n_candidates: int, positives: Sequence[Sequence[int] | set[int]],
              ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """P@1, R@k, median rank (1-based) and the chance P@1 of a ranking."""
    r = ranking.ranks
    out = {"p_at_1": float(np.mean(r == 0)), "median_rank": float(np.median(r) + 1)}
    out.update({f"R@{k}": float(np.mean(r < k)) for k in ks})
    out["chance_p_at_1"] = float(np.mean([len(p) / n_candidates for p in positives]))
    return out
