"""hnswlib cosine search on synthetic 1536-d vectors: latency, recall@10 and speed-up over brute force.

For each size: build an hnswlib cosine index (all threads), then for each ef_search
time single-query ``knn_query`` calls (p50/p99 over --queries queries), measure
recall@k against exact search (numpy on L2-normalised vectors, computed in chunks),
and compare with single-query brute-force numpy cosine (normalised base @ query,
argpartition, sort).

Queries are fresh samples from the same distribution, not index members.

    .venv/bin/python benchmarks/bench_hnsw.py [--sizes 100000 1000000] [--dim 1536]
        [--M 16] [--ef-construction 200] [--ef-search 32 64 128] [--queries 1000]
        [--distribution clustered-lowrank|clusters|uniform] [--threads N] [--cache DIR]

Target: p50 <= 1 ms at 1M vectors, recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

CHUNK = 50_000


class Distribution:
    """A seeded generator of synthetic embedding-like vectors (see :meth:`describe`)."""

    def __init__(self, kind: str, dim: int, *, intrinsic: int, clusters: int, spread: float, noise: float,
                 seed: int) -> None:
        self.kind, self.dim, self.intrinsic, self.clusters = kind, dim, intrinsic, clusters
        self.spread, self.noise, self.seed = spread, noise, seed
        rng = np.random.default_rng(seed)
        if kind == "clustered-lowrank":
            # orthonormal rows: a random `intrinsic`-dimensional subspace of R^dim
            q, _ = np.linalg.qr(rng.standard_normal((dim, intrinsic)))
            self.basis = q.T.astype(np.float32)  # (intrinsic, dim)
            self.centres = rng.standard_normal((clusters, intrinsic)).astype(np.float32)
            self.noise_sd = noise * np.sqrt(intrinsic * (1 + spread**2) / dim)
        elif kind == "clusters":
            c = rng.standard_normal((clusters, dim)).astype(np.float32)
            self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        elif kind != "uniform":
            raise SystemExit(f"unknown --distribution {kind!r}")

    def describe(self) -> str:
        if self.kind == "clustered-lowrank":
            return (f"clustered-lowrank: z = c_j + {self.spread} * N(0, I_{self.intrinsic}), c_j ~ N(0, I_{self.intrinsic}) "
                    f"for {self.clusters} clusters (j uniform); x = z @ B + N(0, s^2 I_{self.dim}) with B a random "
                    f"orthonormal {self.intrinsic}x{self.dim} basis and s = {self.noise_sd:.4g} (noise norm = "
                    f"{self.noise} x signal RMS norm); intrinsic dim {self.intrinsic} in {self.dim}-d")
        if self.kind == "clusters":
            return (f"clusters: x = c_j + {self.spread} * N(0, I_{self.dim}) / sqrt({self.dim}), c_j random unit "
                    f"vectors, {self.clusters} clusters (isotropic full-rank noise inside each cluster)")
        return f"uniform: x ~ N(0, I_{self.dim}) (uniform directions on the sphere; pathological for ANN)"

    def sample(self, n: int, stream: int) -> np.ndarray:
        """``n`` float32 vectors from stream ``stream`` (each stream is reproducible and independent)."""
        rng = np.random.default_rng([self.seed, stream])
        if self.kind == "uniform":
            return rng.standard_normal((n, self.dim), dtype=np.float32)
        j = rng.integers(0, self.clusters, n)
        if self.kind == "clusters":
            x = rng.standard_normal((n, self.dim), dtype=np.float32)
            x *= self.spread / np.sqrt(self.dim)
            x += self.centres[j]
            return x
        z = self.centres[j] + self.spread * rng.standard_normal((n, self.intrinsic), dtype=np.float32)
        x = z @ self.basis
        x += rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(self.noise_sd)
        return x


def normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Exact top-k ids by cosine (both normalised), over base chunks to bound memory."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(base), chunk):
        sims = queries @ base[start : start + chunk].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        s = np.concatenate([best_s, np.take_along_axis(sims, part, axis=1)], axis=1)
        i = np.concatenate([best_i, part + start], axis=1)
        top = np.argsort(-s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    return best_i


def brute_query(base: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Single-query brute-force cosine: normalise, one matrix-vector product, top-k."""
    q = q / np.linalg.norm(q)
    sims = base @ q
    part = np.argpartition(-sims, k - 1)[:k]
    return part[np.argsort(-sims[part])]


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def run_size(n: int, dist: Distribution, args: argparse.Namespace) -> None:
    import hnswlib

    print(f"\n== n = {n:,} vectors x {args.dim}-d ==", flush=True)
    base = np.empty((n, args.dim), dtype=np.float32)  # normalised copy for exact search
    index = hnswlib.Index(space="cosine", dim=args.dim)
    cached = None
    if args.cache:  # a graph built earlier with the same data and parameters: reuse it (the data are seeded)
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha1(f"{dist.describe()}|{args.seed}".encode()).hexdigest()[:10]
        cached = Path(args.cache) / f"{dist.kind}-n{n}-M{args.M}-efc{args.ef_construction}-{tag}.hnsw"
    if cached is not None and cached.exists():
        index.load_index(str(cached), max_elements=n)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            base[start:stop] = normalise(dist.sample(stop - start, stream=1 + start // CHUNK))
        print(f"build: loaded the graph built earlier from {cached} (M={args.M}, "
              f"ef_construction={args.ef_construction})")
    else:
        index.init_index(max_elements=n, M=args.M, ef_construction=args.ef_construction, random_seed=100)
        t_build = 0.0
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            x = dist.sample(stop - start, stream=1 + start // CHUNK)
            t0 = time.perf_counter()
            index.add_items(x, np.arange(start, stop), num_threads=args.threads)
            t_build += time.perf_counter() - t0
            base[start:stop] = normalise(x)
            del x
            if (start // CHUNK) % 4 == 3:
                print(f"  built {stop:,}/{n:,} ({stop / t_build:,.0f} vectors/s)", flush=True)
        print(f"build: {t_build:.1f} s ({n / t_build:,.0f} vectors/s, M={args.M}, "
              f"ef_construction={args.ef_construction}, {args.threads} threads); "
              f"index memory ~ {n * (args.dim * 4 + args.M * 8 + 12) / 2**30:.2f} GiB")
        if cached is not None:
            index.save_index(str(cached))

    queries = dist.sample(args.queries, stream=10**6)  # fresh samples, not index members
    qn = normalise(queries.copy())
    t0 = time.perf_counter()
    truth = exact_topk(base, qn, args.k)
    print(f"exact top-{args.k} for {args.queries} queries (chunked numpy): {time.perf_counter() - t0:.1f} s")

    nb = min(args.brute_queries, args.queries)
    brute: list[float] = []
    for i in range(nb):
        t0 = time.perf_counter()
        ids = brute_query(base, queries[i], args.k)
        brute.append(time.perf_counter() - t0)
        if i == 0:
            assert len(set(ids.tolist()) & set(truth[0].tolist())) == args.k
    b50 = pct(brute, 50) * 1e3
    print(f"brute-force numpy cosine, single query ({nb} queries): p50 {b50:.2f} ms, p99 {pct(brute, 99) * 1e3:.2f} ms")

    print(f"{'ef_search':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@' + str(args.k):>10} {'speed-up p50':>13}")
    for ef in args.ef_search:
        index.set_ef(max(ef, args.k))
        for i in range(min(50, args.queries)):  # warm-up
            index.knn_query(queries[i : i + 1], k=args.k, num_threads=1)
        lat: list[float] = []
        hits = 0
        for i in range(args.queries):
            q = queries[i : i + 1]
            t0 = time.perf_counter()
            labels, _ = index.knn_query(q, k=args.k, num_threads=1)
            lat.append(time.perf_counter() - t0)
            hits += len(set(labels[0].tolist()) & set(truth[i].tolist()))
        p50 = pct(lat, 50) * 1e3
        recall = hits / (args.queries * args.k)
        print(f"{ef:>9} {p50:>8.3f} {pct(lat, 99) * 1e3:>8.3f} {recall:>10.4f} {b50 / p50:>12.0f}x", flush=True)
    del index, base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--brute-queries", type=int, default=50, help="single queries timed for brute force")
    ap.add_argument("--distribution", default="clustered-lowrank", choices=["clustered-lowrank", "clusters", "uniform"])
    ap.add_argument("--intrinsic-dim", type=int, default=32)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--spread", type=float, default=0.5, help="within-cluster spread relative to centre scale")
    ap.add_argument("--noise", type=float, default=0.1, help="full-rank noise norm relative to the signal norm")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for add_items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", help="folder to save built graphs in and reuse them from (ef sweeps without a rebuild)")
    args = ap.parse_args()

    from importlib.metadata import version

    print(machine("cpu"))
    print(f"hnswlib {version('hnswlib')}; numpy {np.__version__}; space cosine; k = {args.k}; "
          f"{args.queries} single-vector queries per ef (num_threads=1)")
    dist = Distribution(args.distribution, args.dim, intrinsic=args.intrinsic_dim, clusters=args.clusters,
                        spread=args.spread, noise=args.noise, seed=args.seed)
    print(f"distribution: {dist.describe()}")
    print("queries: fresh samples from the same distribution (not index members); "
          "exact search = numpy on L2-normalised vectors")
    for n in args.sizes:
        run_size(n, dist, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
