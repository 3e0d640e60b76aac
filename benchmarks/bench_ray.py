"""Local engine vs Ray engine (local Ray, ``--cpus`` CPUs) on the shared rasters: tiles/s and Ray's overhead.

Both index the same folder with the tiny random model and the same tiling into fresh
indexes; the Ray figure includes starting the reader and model actors (Ray itself is
started before the clock starts, as on an existing cluster).

    .venv/bin/python benchmarks/bench_ray.py [--data ../shared/data --tile-size 32 --batch-size 16 --cpus 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from geovec.backend.types import TilingParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("GEOVEC_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--tile-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="local engine reader threads")
    args = ap.parse_args()

    import ray

    from geovec.backend.indexing import index_folder
    from geovec.backend.indexing.ray_engine import RayRunner, index_folder_ray
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="geovec-bench-ray-"))
    try:
        model = write_tiny_model(tmp / "tiny")
        params = TilingParams(tile_size=args.tile_size, min_valid_fraction=0.5)
        emb = load_embedder(str(model), device="cpu")
        print(machine("cpu"))
        t0 = time.perf_counter()
        local = index_folder(args.data, tmp / "local", emb, params=params, batch_size=args.batch_size,
                             workers=args.workers)
        t_local = time.perf_counter() - t0
        ray.init(num_cpus=args.cpus, object_store_memory=256 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        first: list[float] = []
        t0 = time.perf_counter()
        remote = index_folder_ray(args.data, str(tmp / "ray"), model_spec=str(model), params=params,
                                  batch_size=args.batch_size,
                                  progress=lambda e: first.append(time.perf_counter()) if e.tiles_done else None)
        t_ray = time.perf_counter() - t0
        layout = RayRunner(str(model)).layout(ray)
        ray.shutdown()
        assert local.tiles == remote.tiles, (local.tiles, remote.tiles)
        n = local.tiles
        to_first = first[0] - t0 if first else float("nan")
        steady = n / max(t_ray - to_first, 1e-9)
        print(f"data: {args.data} ({local.scenes} scenes, {n} tiles of {args.tile_size} px), tiny random model, "
              f"batch {args.batch_size}")
        print(f"local engine ({args.workers} reader threads): {t_local:7.1f} s  {n / t_local:8.1f} tiles/s")
        print(f"ray engine (local Ray, {args.cpus} CPUs, {layout[0]} reader + {layout[1]} model actors): "
              f"{t_ray:7.1f} s  {n / t_ray:8.1f} tiles/s; first batch after {to_first:.1f} s "
              f"(actor start-up), then {steady:.1f} tiles/s")
        print(f"ray overhead: +{t_ray - t_local:.1f} s on this run ({t_ray / t_local:.1f}x the local wall time)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
