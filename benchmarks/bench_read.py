"""CPU read path on the North Carolina Landsat 7 stack (six one-band files, 489x443 px).

1. Tile reads alone (``read_tile``: windowed read of 3 bands + stretch), every window of
   the stack, N passes, 1 and ``--workers`` threads: reopening the files for every tile
   (no handle cache: the read path before the cache) vs one open dataset per thread
   and scene (:class:`~geovec.backend.raster.handles.DatasetCache`).
2. The whole pipeline (``index_folder``: scan, plan, read + processor in threads, forward,
   write) on the NC folder with the tiny random model, tiles/s (best of ``--repeat``).

    .venv/bin/python benchmarks/bench_read.py [--data ../shared/data --tile-size 64 --passes 5
        --workers 2 --repeat 3 --skip-pipeline | --pipeline-only]

For the pipeline before the handle cache, run ``--pipeline-only`` with an older checkout of
the package first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from geovec.backend.types import TilingParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_rate(scene, stretch, windows, size: int, threads: int, passes: int, cached: bool) -> float:
    """Tiles/s reading every window ``passes`` times on ``threads`` threads."""
    from geovec.backend.raster.handles import DatasetCache
    from geovec.backend.raster.tiling import read_tile

    work = list(windows) * passes
    cache = DatasetCache() if cached else None
    chunks = [work[i::threads] for i in range(threads)]

    def run(chunk):
        for w in chunk:
            read_tile(scene, w, stretch, out_size=size, handles=cache)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, chunks))
    dt = time.perf_counter() - t0
    if cache is not None:
        cache.close()
    return len(work) / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("GEOVEC_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--tile-size", type=int, default=64)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="only part 2 (runs on older versions of the package too, for a before/after)")
    args = ap.parse_args()

    from geovec.backend.raster.scan import scan_folder
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.backend.raster.tiling import GridSampler

    folder = Path(args.data) / "nc_landsat7"
    scenes = [s for s in scan_folder(folder).scenes if s.count == 6]
    if not scenes:
        print(f"no six-band stack found in {folder}", file=sys.stderr)
        return 1
    scene = scenes[0]
    params = TilingParams(tile_size=args.tile_size, min_valid_fraction=0.5)
    stretch = compute_stretch(scene, percentiles=params.percentiles)
    windows = list(GridSampler(scene, params))
    print(machine("cpu"))
    print(f"data: {scene.name} stack ({len(scene.sources)} one-band files, {scene.width}x{scene.height} px, "
          f"{scene.dtype}), {len(windows)} windows of {args.tile_size} px, {args.passes} passes")
    for threads in [] if args.pipeline_only else sorted({1, args.workers}):
        read_rate(scene, stretch, windows[:4], args.tile_size, threads, 1, True)  # warm the page cache
        before = read_rate(scene, stretch, windows, args.tile_size, threads, args.passes, False)
        after = read_rate(scene, stretch, windows, args.tile_size, threads, args.passes, True)
        print(f"read_tile, {threads} thread(s): reopen per tile {before:8.1f} tiles/s "
              f"({1000 * threads / before:.2f} ms/tile); handle cache {after:8.1f} tiles/s "
              f"({1000 * threads / after:.2f} ms/tile): {after / before:.2f}x")
    if args.skip_pipeline:
        return 0

    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model
    from geovec.backend.types import EmbedInput

    tmp = Path(tempfile.mkdtemp(prefix="geovec-bench-read-"))
    try:
        emb = load_embedder(str(write_tiny_model(tmp / "tiny")), device="cpu")
        emb.encode([EmbedInput(emb.preset.instructions["text_query"], text="warm up")])
        import torch

        best, n = 0.0, 0
        for r in range(args.repeat):
            idx = tmp / f"i{r}"
            t0 = time.perf_counter()
            s = index_folder(folder, idx, emb, params=params, batch_size=args.batch_size, workers=args.workers)
            dt = time.perf_counter() - t0
            n = s.tiles
            best = max(best, n / dt)
            shutil.rmtree(idx, ignore_errors=True)
        print(f"pipeline (index_folder, tiny random model, {args.workers} reader threads, torch threads "
              f"{torch.get_num_threads()} outside the run, batch "
              f"{args.batch_size}) on {folder.name} ({n} tiles): {best:.1f} tiles/s (best of {args.repeat})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
