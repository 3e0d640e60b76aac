"""Memory and time of ``geovec eval``'s ranking at scale: 40k queries x 40k candidates, random vectors.

The ranking step of every eval task (:func:`geovec.training.eval.ranking.rank_positives`):
similarities in row chunks, rank of each query's positive, top-10, never an
n x n matrix. Vectors are random unit vectors (the figure is about memory and
time, not accuracy), one positive per query as in text -> image retrieval, and
``--dense`` also times the n x n ``argsort`` the chunked ranking replaces
(needs ~3 x n^2 x 8 bytes: 38 GB at 40k; use it at 10k).

    .venv/bin/python benchmarks/bench_eval_ranking.py [--n 40000 --dim 1536 --chunk-mib 64]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np

from geovec.training.eval.ranking import rank_positives, summarise

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import machine  # noqa: E402


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40_000, help="queries = candidates")
    ap.add_argument("--dim", type=int, default=1536, help="vector size (Qwen2-VL-2B: 1536)")
    ap.add_argument("--chunk-mib", type=int, default=64, help="similarities held at once, MiB")
    ap.add_argument("--dense", action="store_true", help="also time a full n x n argsort (small n only)")
    args = ap.parse_args(argv)
    print(machine("cpu"))
    rng = np.random.default_rng(0)
    q = _unit(rng, args.n, args.dim)
    c = 0.1 * q + 0.995 * _unit(rng, args.n, args.dim)  # query i's positive is candidate i, barely
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    positives = [{i} for i in range(args.n)]
    inputs_mib = (q.nbytes + c.nbytes) / 2**20
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    ranking = rank_positives(q, c, positives, k=10, chunk_elements=args.chunk_mib * 2**20 // 4)
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = summarise(ranking, args.n, positives)
    print(f"data: {args.n} queries x {args.n} candidates, dim {args.dim}, random unit vectors "
          f"(inputs {inputs_mib:.0f} MiB float32), one positive each")
    print(f"chunked ranking: {wall:.1f} s ({args.n / wall:,.0f} queries/s); peak extra memory "
          f"{peak / 2**20:.0f} MiB (tracemalloc; chunk {args.chunk_mib} MiB); process max RSS {rss1:.0f} MiB "
          f"(before ranking {rss0:.0f} MiB)")
    print(f"sanity: P@1 {s['p_at_1']:.3f}, R@10 {s['R@10']:.3f}, median rank {s['median_rank']:.0f}")
    print(f"a dense n x n float32 similarity alone would be {args.n ** 2 * 4 / 2**30:.1f} GiB, its argsort "
          f"{args.n ** 2 * 8 / 2**30:.1f} GiB more")
    if args.dense:
        t0 = time.perf_counter()
        order = np.argsort(-(q @ c.T), axis=1, kind="stable")
        dense_ranks = np.array([int(np.nonzero(order[i] == i)[0][0]) for i in range(args.n)])
        print(f"dense argsort: {time.perf_counter() - t0:.1f} s; same ranks: "
              f"{bool((dense_ranks == ranking.ranks).all())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
