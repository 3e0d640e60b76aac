"""The full-size model on this machine: a Qwen2-VL-2B-sized checkpoint with random weights.

Builds the checkpoint locally (``geovec model fullsize``: the public Qwen2-VL-2B config,
2.2 B parameters, bf16 safetensors), loads it through ``load_embedder`` exactly as a
downloaded one, and prints for each dtype and image size (each in a fresh process, so
peak RSS is that configuration's own): load time, peak and steady RSS, dim, and seconds
per tile / text query / region (16 boxes on one tile, prefix-shared) / point query.
Then tiles/s through ``geovec index`` against a naive per-tile loop, same tiles, same run.

``--compare fp32 int8 bf16`` (with ``--sizes`` and ``--index-tiles 0`` to skip the rest):
tiles/s of each dtype at ``--compare-size`` (448) on ``--compare-tiles`` tiles, each in
a fresh process, and the cosine of each dtype's vectors against the first dtype's
(fp32) for tiles, text queries and region boxes. Random weights: the cosines show how
far quantisation moves a 2B network's outputs with these weight statistics, not
retrieval quality with trained weights.

    .venv/bin/python benchmarks/bench_fullsize.py [--dir DIR] [--dtypes fp32 bf16]
        [--sizes 1344 448] [--index-size 448] [--index-tiles 8] [--threads N]
    .venv/bin/python benchmarks/bench_fullsize.py --sizes --index-tiles 0 \
        --compare fp32 int8 bf16 --compare-tiles 2

Random weights: only speed and memory mean anything. ``--sizes 1344`` is the preset's own
input (1344 px, then the processor's bound: 980 px, 1,225 image tokens); on a 2-core CPU
it costs tens of seconds to minutes per tile; ``--sizes 448`` alone is the quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(ckpt: str, dtype: str, size: int, reps: int, threads: int | None) -> dict[str, object]:
    """One configuration in this (fresh) process."""
    import numpy as np
    import torch

    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.types import EmbedInput

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    emb = load_embedder(ckpt, device="cpu", dtype=dtype, image_size=size)
    load_s = time.perf_counter() - t0
    peak_load = _peak_mb()
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    ins = emb.instructions
    cases = {
        "tile": lambda: emb.encode([EmbedInput(ins["tile"], image=img)]),
        "text": lambda: emb.encode([EmbedInput(ins["text_query"], text="circular storage tanks next to the pier")]),
        "point": lambda: emb.encode([EmbedInput(ins["point_query"], image=img, latlon=(29.69, -82.03))]),
        "regions16": lambda: emb.encode_regions(img, [(x * 64, y * 64, x * 64 + 64, y * 64 + 64)
                                                      for y in range(4) for x in range(4)]),
    }
    out: dict[str, object] = {"dtype": dtype, "size": size, "policy": emb.preset.image.describe(),
                              "tokens": emb.tokens_per_image(256, 256), "dim": emb.dim, "load_s": round(load_s, 1),
                              "peak_load_mb": round(peak_load), "threads": torch.get_num_threads()}
    cases["text"]()  # warm-up
    for name, fn in cases.items():
        n = 1 if name != "text" else max(reps, 3)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out[f"{name}_s"] = round((time.perf_counter() - t0) / n, 2)
    out["steady_mb"] = round(_rss_mb())
    out["peak_mb"] = round(_peak_mb())
    return out


def naive_child(ckpt: str, folder: str, dtype: str, size: int, threads: int | None) -> dict[str, object]:
    """One tile at a time: read -> processor -> HF forward (batch 1), in this process."""
    import torch

    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.raster.scan import scan_folder
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.backend.raster.tiling import GridSampler, read_tile
    from geovec.backend.types import EmbedInput, TilingParams

    if threads:
        torch.set_num_threads(threads)
    emb = load_embedder(ckpt, device="cpu", dtype=dtype, image_size=size)
    params = TilingParams(tile_size=256)
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for scene in scan_folder(folder).scenes:
            stretch = compute_stretch(scene)
            for w in GridSampler(scene, params):
                img, _ = read_tile(scene, w, stretch, out_size=256)
                prompt = emb.preset.build_prompt(EmbedInput(emb.instructions["tile"], image=img))
                inputs = emb.processor(text=[prompt], images=[emb.image(img)], return_tensors="pt")
                emb.model(**inputs, output_hidden_states=True)
                n += 1
    return {"tiles": n, "seconds": round(time.perf_counter() - t0, 1)}


def compare_child(ckpt: str, dtype: str, size: int, tiles: int, out: str, threads: int | None) -> dict[str, object]:
    """Encode ``tiles`` tiles (timed, after one warm-up tile), 3 texts and 4 boxes; vectors to ``out`` (.npz)."""
    import numpy as np
    import torch

    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.types import EmbedInput

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    emb = load_embedder(ckpt, device="cpu", dtype=dtype, image_size=size)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(tiles)]
    ins = emb.instructions
    emb.encode([EmbedInput(ins["tile"], image=imgs[0])])  # warm-up
    t0 = time.perf_counter()
    tile_vecs = np.concatenate([emb.encode([EmbedInput(ins["tile"], image=im)]) for im in imgs])
    tile_s = time.perf_counter() - t0
    texts = ["circular storage tanks next to the pier", "a river delta", "dense urban blocks"]
    text_vecs = emb.encode([EmbedInput(ins["text_query"], text=t) for t in texts])
    boxes = [(0, 0, 128, 128), (128, 0, 256, 128), (64, 64, 192, 192), (0, 128, 256, 256)]
    box_vecs = emb.encode_regions(imgs[0], boxes)
    np.savez(out, tiles=tile_vecs, texts=text_vecs, boxes=box_vecs)
    return {"dtype": emb.identity["dtype"], "size": size, "tiles": tiles, "tile_s": round(tile_s, 3),
            "load_s": round(load_s, 1), "peak_mb": round(_peak_mb()), "threads": torch.get_num_threads()}


def compare(args: argparse.Namespace, ckpt: Path, work: Path, env: dict[str, str], threads: list[str]) -> None:
    """Tiles/s per dtype and cosines of each dtype's vectors against the first's, one run."""
    import numpy as np

    print(f"dtype comparison at {args.compare_size} px, {args.compare_tiles} timed tiles each (after one warm-up), "
          f"3 texts, 4 boxes on one tile; each dtype in a fresh process; load now {os.getloadavg()[0]:.2f}")
    res, vecs = [], []
    for dtype in args.compare:
        out = work / f"vecs-{dtype}.npz"
        r = _run([__file__, "--compare-child", str(ckpt), dtype, str(args.compare_size), str(args.compare_tiles),
                  str(out), *threads], env)
        res.append(r)
        vecs.append(dict(np.load(out)))
    base = res[0]
    print(f"{'dtype':>5} {'tiles/s':>8} {'s/tile':>7} {'speed-up':>9} {'load s':>7} {'peak MB':>8}   "
          f"cosine vs {base['dtype']}: tiles / texts / boxes (min)")
    for r, v in zip(res, vecs, strict=True):
        rate = r["tiles"] / r["tile_s"]  # type: ignore[operator]
        cos = []
        for kind in ("tiles", "texts", "boxes"):
            a, b = vecs[0][kind], v[kind]
            c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            cos.append(f"{c.min():.4f}")
        speed = base["tile_s"] / r["tile_s"]  # type: ignore[operator]
        print(f"{r['dtype']:>5} {rate:8.3f} {r['tile_s'] / r['tiles']:7.1f} {speed:8.2f}x {r['load_s']:>7} "  # type: ignore[operator]
              f"{r['peak_mb']:>8}   {' / '.join(cos)}   ({r['threads']} threads)", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}; random weights: cosines measure numeric drift only")


def _run(args: list[str], env: dict[str, str]) -> dict[str, object]:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"child failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="checkpoint folder (built there if missing; default: a temporary one)")
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1344, 448])
    ap.add_argument("--index-size", type=int, default=448, help="image size of the indexing comparison")
    ap.add_argument("--index-dtype", default="bf16")
    ap.add_argument("--index-tiles", type=int, default=8, help="tiles in the indexing comparison (0: skip it)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--child", nargs=3, metavar=("CKPT", "DTYPE", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--naive", nargs=4, metavar=("CKPT", "FOLDER", "DTYPE", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--compare", nargs="*", default=[], help="dtypes to compare (first = reference), e.g. fp32 int8 bf16")
    ap.add_argument("--compare-size", type=int, default=448)
    ap.add_argument("--compare-tiles", type=int, default=2)
    ap.add_argument("--compare-child", nargs=5, metavar=("CKPT", "DTYPE", "SIZE", "TILES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compare_child:
        ck, dtype, size, tiles, out = args.compare_child
        print(json.dumps(compare_child(ck, dtype, int(size), int(tiles), out, args.threads)))
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]), args.reps, args.threads)))
        return 0
    if args.naive:
        ck, folder, dtype, size = args.naive
        print(json.dumps(naive_child(ck, folder, dtype, int(size), args.threads)))
        return 0

    from geovec.backend.demo import write_scene
    from geovec.backend.model.fullsize import write_fullsize_model

    print(machine("cpu"))
    work = Path(tempfile.mkdtemp(prefix="geovec-fullsize-"))
    ckpt = Path(args.dir) if args.dir else work / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GEOVEC_TOKEN_FILE": str(work / "no-server.json")}
    threads = ["--threads", str(args.threads)] if args.threads else []
    try:
        if not (ckpt / "config.json").exists():
            t0 = time.perf_counter()
            write_fullsize_model(ckpt)
            print(f"built {ckpt} in {time.perf_counter() - t0:.0f} s "
                  f"({sum(f.stat().st_size for f in ckpt.glob('*.safetensors')) / 1e9:.2f} GB)")
        print("model: Qwen2-VL-2B architecture, random weights (vlm2vec-qwen2vl-2b preset layout), CPU")
        if args.sizes:
            print(f"{'dtype':>5} {'image':>6} {'load s':>7} {'peak MB':>8} {'steady MB':>9} {'tile s':>7} "
                  f"{'text s':>7} {'16 regions s':>12} {'point s':>8}")
        for size in args.sizes:
            for dtype in args.dtypes:
                r = _run([__file__, "--child", str(ckpt), dtype, str(size), "--reps", str(args.reps), *threads], env)
                print(f"{r['dtype']:>5} {r['size']:>6} {r['load_s']:>7} {r['peak_mb']:>8} {r['steady_mb']:>9} "
                      f"{r['tile_s']:>7} {r['text_s']:>7} {r['regions16_s']:>12} {r['point_s']:>8}   (images "
                      f"{r['policy']}, dim {r['dim']}, {r['threads']} threads)", flush=True)
        if args.compare:
            compare(args, ckpt, work, env, threads)
        if args.index_tiles:
            folder = work / "rasters"
            folder.mkdir()
            side = 256 * max(1, int(round(args.index_tiles ** 0.5)))
            write_scene(folder / "scene.tif", "mixed", size=side)
            naive = _run([__file__, "--naive", str(ckpt), str(folder), args.index_dtype, str(args.index_size),
                          *threads], env)
            cli = subprocess.run([sys.executable, "-m", "geovec.backend", "index", str(folder), "--index",
                                  str(work / "idx"), "--model", str(ckpt), "--dtype", args.index_dtype,
                                  "--image-size", str(args.index_size), "--tile-size", "256", "--json",
                                  "--no-progress"], capture_output=True, text=True, env=env)
            if cli.returncode != 0:
                raise SystemExit(f"geovec index failed: {cli.stderr[-2000:]}")
            summary = json.loads(cli.stdout)
            n_rate = naive["tiles"] / naive["seconds"]
            p_rate = summary["tiles"] / summary["seconds"]
            print(f"indexing {summary['tiles']} tiles at --image-size {args.index_size}, {args.index_dtype}: geovec index "
                  f"{p_rate:.3f} tiles/s ({summary['seconds']:.0f} s) vs naive per-tile loop {n_rate:.3f} tiles/s "
                  f"({naive['seconds']} s): {p_rate / n_rate:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the checkpoint too, unless --dir put it elsewhere
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
