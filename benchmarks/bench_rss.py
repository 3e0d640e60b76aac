"""Peak RSS while indexing N and 10N tiles: streaming means it stays flat.

Each size runs in a fresh subprocess that loads the model, notes its RSS
(baseline), indexes the folder while a thread polls RSS every 20 ms, and reports
the peak (psutil polling and resource.getrusage's ru_maxrss).

    .venv/bin/python benchmarks/bench_rss.py [--tiles 64 --tile-size 64 --model DIR] [--regions SPEC]

``--regions`` indexes with candidate region vectors too (``''`` = the default spec).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from geovec.backend.demo import write_scene  # noqa: E402


def child(folder: str, index: str, model: str, tile_size: int, regions: str | None = None) -> None:
    """Index ``folder`` and print {"tiles", "baseline_mb", "peak_mb", "maxrss_mb", "seconds"} as JSON."""
    import psutil

    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.types import EmbedInput, TilingParams

    proc = psutil.Process()
    emb = load_embedder(model, device="cpu")
    emb.encode([EmbedInput(emb.preset.instructions["text_query"], text="warm up")])
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    t0 = time.perf_counter()
    s = index_folder(folder, index, emb, params=TilingParams(tile_size=tile_size), batch_size=16, workers=2,
                     regions=regions)
    secs = time.perf_counter() - t0
    stop.set()
    t.join()
    mb = 1024 * 1024
    print(json.dumps({"tiles": s.tiles, "baseline_mb": baseline / mb, "peak_mb": peak[0] / mb,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": secs}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=64, help="N (the second run indexes 10N)")
    ap.add_argument("--tile-size", type=int, default=64)
    ap.add_argument("--model", help="model dir (default: tiny random model in a temp dir)")
    ap.add_argument("--regions", nargs="?", const="", metavar="SPEC", help="index with region vectors too")
    ap.add_argument("--child", nargs=4, metavar=("FOLDER", "INDEX", "MODEL", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]), args.regions)
        return 0

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="geovec-bench-rss-"))
    try:
        model = args.model
        if model is None:
            from geovec.backend.model.tiny import write_tiny_model

            model = str(write_tiny_model(tmp / "tiny"))
        print(machine("cpu"))
        print(f"torch {torch.__version__}; tile {args.tile_size} px; one scene = 8x8 tiles "
              f"({8 * args.tile_size} px square, 16-bit); regions: "
              f"{'none' if args.regions is None else (args.regions or 'default spec')}")
        per_scene = 64
        rows = []
        for n in (args.tiles, 10 * args.tiles):
            folder = tmp / f"f{n}"
            for i in range(max(1, n // per_scene)):
                write_scene(folder / f"s{i}.tif", ("water", "forest", "urban", "mixed")[i % 4],
                            size=8 * args.tile_size, dtype="uint16", seed=i, origin=(400000.0 + 10000 * i, 3300000.0))
            extra = [] if args.regions is None else [f"--regions={args.regions}"]
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(tmp / f"i{n}"), model,
                                  str(args.tile_size), *extra], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{'tiles':>7} {'baseline MB':>12} {'peak MB':>9} {'peak-baseline':>14} {'ru_maxrss MB':>13} {'s':>7}")
        for r in rows:
            print(f"{r['tiles']:>7} {r['baseline_mb']:>12.1f} {r['peak_mb']:>9.1f} "
                  f"{r['peak_mb'] - r['baseline_mb']:>14.1f} {r['maxrss_mb']:>13.1f} {r['seconds']:>7.1f}")
        a, b = rows
        growth = (b["peak_mb"] - b["baseline_mb"]) - (a["peak_mb"] - a["baseline_mb"])
        print(f"10x the tiles adds {growth:+.1f} MB to the indexing peak "
              f"({'flat' if growth < 0.1 * a['peak_mb'] else 'NOT flat'}: target < 10% of the N-tile peak)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
