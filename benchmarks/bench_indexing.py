"""Indexing throughput: the staged pipeline vs a naive per-tile loop, same tiles, same run.

The naive loop does, for one tile at a time: windowed read, processor call,
forward, IndexStore.add. The pipeline (geovec.backend.indexing.index_folder)
reads and runs the processor in a worker pool and forwards batches.

    .venv/bin/python benchmarks/bench_indexing.py [--scenes 4 --size 256 --tile-size 64
        --batch-size 16 --workers 2 --model DIR_OR_PRESET --device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from geovec.backend.demo import write_scene  # noqa: E402
from geovec.backend.types import EmbedInput, TilingParams  # noqa: E402


def naive(folder: Path, index: Path, embedder, params: TilingParams) -> int:
    """One tile at a time: read -> processor -> forward -> add."""
    import torch

    from geovec.backend.index.store import IndexStore
    from geovec.backend.raster.scan import scan_folder
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.backend.raster.tiling import GridSampler, make_record, read_tile

    store = IndexStore.open_or_create(index, dim=embedder.dim, preset=embedder.preset.name,
                                      checkpoint=embedder.checkpoint_id, tiling=params.to_dict())
    instruction = embedder.preset.instructions["tile"]
    n = 0
    try:
        for scene in scan_folder(folder).scenes:
            stretch = compute_stretch(scene, percentiles=params.percentiles)
            store.upsert_scene(scene, stretch)
            for w in GridSampler(scene, params):
                img, vf = read_tile(scene, w, stretch, out_size=params.tile_size)
                if vf < params.min_valid_fraction:
                    continue
                feats = embedder.prepare([EmbedInput(instruction, image=img)])
                with torch.inference_mode():
                    vec = embedder.forward(feats).float().cpu().numpy()
                store.add([make_record(scene, w, valid_fraction=vf, out_size=params.tile_size)], vec)
                n += 1
            store.complete_scene(scene.scene_id)
        store.checkpoint()
    finally:
        store.close()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="scene edge in pixels")
    ap.add_argument("--tile-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", help="model dir / preset (default: a tiny random model written to a temp dir)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1, help="alternate naive/pipeline this many times, keep best")
    args = ap.parse_args()

    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder

    tmp = Path(tempfile.mkdtemp(prefix="geovec-bench-idx-"))
    try:
        folder = tmp / "rasters"
        kinds = ("water", "forest", "urban", "mixed")
        for i in range(args.scenes):
            write_scene(folder / f"s{i}.tif", kinds[i % 4], size=args.size, seed=i,
                        origin=(400000.0 + 20000 * i, 3300000.0))
        model = args.model
        if model is None:
            from geovec.backend.model.tiny import write_tiny_model

            model = str(write_tiny_model(tmp / "tiny"))
        emb = load_embedder(model, device=args.device)
        params = TilingParams(tile_size=args.tile_size, min_valid_fraction=0.5)
        print(machine(str(emb.device)))
        print(f"model {emb.preset.name} ({emb.checkpoint_id}), dim {emb.dim}; {args.scenes} scenes of "
              f"{args.size}x{args.size} px, tile {args.tile_size} px; pipeline batch {args.batch_size}, "
              f"{args.workers} reader threads")
        # warm-up: one forward so lazy init does not count against the first contender
        naive_best = pipe_best = 0.0
        n_naive = n_pipe = 0
        for r in range(args.repeat):
            shutil.rmtree(tmp / "i_naive", ignore_errors=True)
            shutil.rmtree(tmp / "i_pipe", ignore_errors=True)
            if r == 0:
                emb.encode([EmbedInput(emb.preset.instructions["text_query"], text="warm up")])
            t0 = time.perf_counter()
            n_naive = naive(folder, tmp / "i_naive", emb, params)
            naive_best = max(naive_best, n_naive / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            s = index_folder(folder, tmp / "i_pipe", emb, params=params, batch_size=args.batch_size,
                             workers=args.workers)
            n_pipe = s.tiles
            pipe_best = max(pipe_best, n_pipe / (time.perf_counter() - t0))
        assert n_naive == n_pipe, (n_naive, n_pipe)
        print(f"tiles: {n_pipe} (both)")
        print(f"naive per-tile loop : {naive_best:8.2f} tiles/s")
        print(f"pipeline            : {pipe_best:8.2f} tiles/s")
        print(f"speed-up            : {pipe_best / naive_best:8.2f}x  (target >= 3x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
