"""Search on Ray shard actors (local Ray, 4 shards) against in-process multi-index search, and a capacity table.

Builds four IndexStores of synthetic embedding-like vectors (bench_multi's law and records), then asks the
same queries of (a) the four as a MultiStore in this process and (b) the four as shard actors on a local
Ray (``RayShards``), interleaved: how many queries get the same top 10, p50/p99 of ``find_hits(k=10)`` for
each (no model: the query vector is given), and each shard's memory (actor RSS and what it reserved).
Then a capacity table on paper: tiles per node by RAM at the measured 6.1 GiB per million 1536-d tiles
(README, bench_multi.py) and the expected fan-out latency, for 10M to 1B tiles.

    .venv/bin/python benchmarks/bench_cluster.py [--tiles 8000 --dim 1536 --queries 200 --dir DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402
from bench_multi import BLOCK, _dist, build  # noqa: E402

GIB_PER_MILLION = 6.1  # an open index, 1536-d tiles, M=16 (bench_multi.py); region vectors take as much again


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def measure(parts: list[Path], dist, queries: int) -> dict:
    import time

    import psutil
    import ray

    from geovec.backend.cluster import RayShards
    from geovec.backend.index.store import IndexStore
    from geovec.backend.search import MultiStore, find_hits

    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    shards = RayShards()
    local = MultiStore([IndexStore.open(p) for p in parts])
    one = IndexStore.open(parts[0])
    try:
        remote = shards.open_set([str(p) for p in parts])
        qs = dist.sample(queries + 20, stream=10_000)
        t_local: list[float] = []
        t_ray: list[float] = []
        t_part: list[float] = []
        same = 0
        for i, q in enumerate(qs):
            t0 = time.perf_counter()
            a = find_hits(local, q, k=10)
            t1 = time.perf_counter()
            b = find_hits(remote, q, k=10)
            t2 = time.perf_counter()
            find_hits(one, q, k=10)
            t3 = time.perf_counter()
            if i >= 20:  # warm-up excluded
                t_local.append((t1 - t0) * 1000)
                t_ray.append((t2 - t1) * 1000)
                t_part.append((t3 - t2) * 1000)
                same += [h.record.tile_id for h in a] == [h.record.tile_id for h in b]
        assert not remote.missing, remote.missing
        mem = [(s.path.name, psutil.Process(s.pid).memory_info().rss, s.memory, s.count)
               for s in shards.shards.values()]
        return {"local": t_local, "ray": t_ray, "part": t_part, "same": same, "mem": mem}
    finally:
        local.close()
        one.close()
        shards.close()
        ray.shutdown()


def capacity(overhead_ms: float, part_ms: float, part_tiles: int) -> None:
    """The table on paper (see the module docstring)."""
    print("\ncapacity on paper: 1536-d tiles at 6.1 GiB per million (x2 with region vectors), 80% of a node's RAM "
          "for shards;\nexpected fan-out p50 = measured Ray call overhead + one shard's search (hnsw, grows ~log n "
          "from the measured shard) + merge;\nmeasured on one machine: add the nodes' network round trip; the tail "
          "follows the slowest shard, so it grows with the shard count")
    print(f"{'tiles':>8} {'RAM needed':>11} | {'nodes 128 GiB':>13} {'nodes 256 GiB':>13} {'nodes 512 GiB':>13}"
          f" | {'tiles/shard (512 GiB node)':>26} {'expected p50':>13}")
    for tiles in (10_000_000, 50_000_000, 100_000_000, 1_000_000_000):
        need = tiles / 1e6 * GIB_PER_MILLION
        nodes = [math.ceil(need / (ram * 0.8)) for ram in (128, 256, 512)]
        per_shard = tiles / nodes[2]
        search = part_ms * math.log(per_shard) / math.log(max(part_tiles, 2))
        print(f"{tiles / 1e6:>7.0f}M {need / 1024:>9.2f} TiB | {nodes[0]:>13} {nodes[1]:>13} {nodes[2]:>13}"
              f" | {per_shard / 1e6:>24.1f}M {overhead_ms + search:>10.1f} ms")
    for ram in (128, 256, 512):
        print(f"  a {ram} GiB node holds ~{ram * 0.8 / GIB_PER_MILLION:.0f}M tiles "
              f"(~{ram * 0.8 / GIB_PER_MILLION / 2:.0f}M with region vectors)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=8000, help="tiles over the 4 shards (a multiple of 4000)")
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dir", help="keep the built indexes here and reuse them (default: a temp dir)")
    args = ap.parse_args()
    args.tiles = max(4 * BLOCK, args.tiles // (4 * BLOCK) * 4 * BLOCK)
    dist = _dist(args.dim)
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="geovec-bench-cluster-"))
    try:
        print(machine("cpu"))
        print(f"before: {load()}")
        print(f"vectors: {dist.describe()}; no model (query vectors given)")
        parts, quarter = [tmp / f"shard{i}" for i in range(4)], args.tiles // 4
        for i, p in enumerate(parts):
            if not (p / "index.json").exists():
                print(f"built shard {i} ({quarter} tiles) in {build(p, dist, i * quarter, quarter):.0f} s", flush=True)
        got = measure(parts, dist, args.queries)
        p = np.percentile
        print(f"\nfind_hits k=10 over 4 shards of {quarter}, {args.queries} queries, interleaved:")
        print(f"  same top 10 (ids and order) as in-process multi-index search: {got['same']}/{args.queries}")
        for label, t in (("in-process MultiStore", got["local"]), ("Ray shard actors", got["ray"]),
                         ("one shard in-process", got["part"])):
            print(f"  {label:>22}: p50 {p(t, 50):.2f} ms, p99 {p(t, 99):.2f} ms")
        print("memory per shard (actor RSS; reserved from the index size):")
        for name, rss, reserved, count in got["mem"]:
            print(f"  {name}: {count} tiles, RSS {rss / 2**20:.0f} MiB, reserved {reserved / 2**20:.0f} MiB")
        print(f"after: {load()}")
        capacity(p(got["ray"], 50) - p(got["part"], 50), p(got["part"], 50), quarter)
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
