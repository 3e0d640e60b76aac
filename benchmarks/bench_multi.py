"""RAM an index needs per million tiles (and per million region vectors), and search over 4 indexes vs 1.

Builds, with synthetic embedding-like vectors (bench_hnsw's clustered-lowrank law) and
synthetic tile records, one IndexStore of ``--tiles`` vectors and four of a quarter each
(store defaults: cosine, M=16, ef_construction=200, ef_search=64). Then, each in a fresh
subprocess:

* tiles: RSS growth of ``IndexStore.open`` (read-only, as search holds an index) per tile,
  scaled to a million; the SQLite file stays on disk (page cache, not process memory);
* region vectors: RSS growth of loading the same vectors as a bare hnswlib file (how a
  second per-index vector file of region embeddings, same dim and M, is held);

and the p50/p99 of ``find_hits(k=10)`` (hnsw search + SQLite record fetch, no model) over
the one index vs the four as a MultiStore, same queries, interleaved.

    .venv/bin/python benchmarks/bench_multi.py [--tiles 100000 --dim 1536 --queries 300 --dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402
from bench_hnsw import Distribution  # noqa: E402

from geovec.backend.types import TileRecord  # noqa: E402

BLOCK = 1000  # vectors per generator stream; --tiles is rounded to 4 blocks
FOOTPRINT = "POLYGON ((10 45, 10.01 45, 10.01 45.01, 10 45.01, 10 45))"


def _dist(dim: int) -> Distribution:
    return Distribution("clustered-lowrank", dim, intrinsic=32, clusters=100, spread=0.35, noise=0.5, seed=0)


def build(path: Path, dist: Distribution, start: int, n: int) -> float:
    """An IndexStore at ``path`` holding vectors ``start..start+n`` of the law; returns seconds."""
    from geovec.backend.index.store import IndexStore

    t0 = time.perf_counter()
    store = IndexStore.create(path, dim=dist.dim, preset="bench", checkpoint="synthetic", tiling={"tile_size": 256})
    try:
        for s in range(start, start + n, BLOCK):  # vector i is the same wherever it is stored
            m = min(BLOCK, start + n - s)
            vecs = dist.sample(BLOCK, stream=s // BLOCK)[:m]
            recs = [TileRecord(tile_id=f"t{s + i}", scene_id=f"s{(s + i) // 1000}", sources=("/data/x.tif",),
                               window=(0, 0, 256, 256), crs_wkt="EPSG:32633", bounds=(0.0, 0.0, 1.0, 1.0),
                               footprint_wgs84=FOOTPRINT, center_lat=45.005, center_lon=10.005, gsd=10.0,
                               valid_fraction=1.0) for i in range(m)]
            store.add(recs, vecs)
    finally:
        store.close()
    return time.perf_counter() - t0


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child_rss(kind: str, path: str) -> None:
    """(subprocess) print the RSS growth of holding one index (kind=store) or its bare hnsw file (kind=hnsw)."""
    import hnswlib

    from geovec.backend.index.store import IndexStore

    before = _rss()
    if kind == "store":
        store = IndexStore.open(path)
        store.search(np.ones(store.dim, np.float32), 10)
        n = store.count
    else:
        meta = json.loads((Path(path) / "index.json").read_text())
        index = hnswlib.Index(space="cosine", dim=int(meta["dim"]))
        index.load_index(str(Path(path) / "vectors.hnsw"))
        index.knn_query(np.ones(int(meta["dim"]), np.float32), k=10)
        n = index.get_current_count()
    print(json.dumps({"bytes": _rss() - before, "n": n}))


def latency(one: Path, parts: list[Path], dist: Distribution,
            queries: int) -> tuple[list[float], list[float], list[float], list[float], float]:
    from geovec.backend.index.store import IndexStore
    from geovec.backend.search import MultiStore, find_hits

    single = IndexStore.open(one)
    multi = MultiStore([IndexStore.open(p) for p in parts])
    qs = dist.sample(queries + 20, stream=10_000)
    t_one: list[float] = []
    t_multi: list[float] = []
    c_one: list[float] = []
    c_multi: list[float] = []
    overlap = 0.0
    try:
        for i, q in enumerate(qs):
            t0, c0 = time.perf_counter(), time.thread_time()
            a = find_hits(single, q, k=10)
            t1, c1 = time.perf_counter(), time.thread_time()
            b = find_hits(multi, q, k=10)
            t2, c2 = time.perf_counter(), time.thread_time()
            if i >= 20:  # warm-up excluded
                t_one.append((t1 - t0) * 1000)
                t_multi.append((t2 - t1) * 1000)
                c_one.append((c1 - c0) * 1000)
                c_multi.append((c2 - c1) * 1000)
                overlap += len({h.record.tile_id for h in a} & {h.record.tile_id for h in b}) / 10
    finally:
        single.close()
        multi.close()
    return t_one, t_multi, c_one, c_multi, overlap / queries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dir", help="keep the built indexes here and reuse them (default: a temp dir)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_rss(*args.child)
        return 0

    args.tiles = max(4 * BLOCK, args.tiles // (4 * BLOCK) * 4 * BLOCK)
    dist = _dist(args.dim)
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="geovec-bench-multi-"))
    try:
        print(machine("cpu"))
        print(f"vectors: {dist.describe()}")
        one, parts = tmp / "one", [tmp / f"part{i}" for i in range(4)]
        quarter = args.tiles // 4
        if not (one / "index.json").exists():
            print(f"built 1 x {args.tiles} in {build(one, dist, 0, args.tiles):.0f} s", flush=True)
        for i, p in enumerate(parts):
            if not (p / "index.json").exists():
                print(f"built part {i} ({quarter}) in {build(p, dist, i * quarter, quarter):.0f} s", flush=True)
        for kind, label in (("store", "tiles (IndexStore, read-only)"), ("hnsw", "region vectors (bare hnswlib file)")):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(one)], capture_output=True,
                                 text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            per_m = got["bytes"] / got["n"] * 1e6 / 2**30
            print(f"RAM for {label}: {got['bytes'] / 2**20:.0f} MiB for {got['n']} x {args.dim}-d -> "
                  f"{per_m:.2f} GiB per million (M=16)")
        disk = sum(f.stat().st_size for f in one.iterdir())
        print(f"disk: {disk / 2**20:.0f} MiB for {args.tiles} tiles ({disk / args.tiles * 1e6 / 2**30:.2f} GiB per "
              f"million; SQLite keeps every vector too)")
        t_one, t_multi, c_one, c_multi, overlap = latency(one, parts, dist, args.queries)
        p = np.percentile
        print(f"find_hits k=10, {args.queries} queries, top-10 overlap 4-vs-1 {overlap:.3f}")
        for what, a, b in (("wall", t_one, t_multi), ("CPU (thread time)", c_one, c_multi)):
            print(f"  {what}: one index of {args.tiles}: p50 {p(a, 50):.2f} ms, p99 {p(a, 99):.2f} ms; "
                  f"4 indexes of {quarter}: p50 {p(b, 50):.2f} ms, p99 {p(b, 99):.2f} ms "
                  f"({p(b, 50) / p(a, 50):.2f}x at p50)")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
