"""Region scoring cost: K boxes on one tile, prefix-shared, as a multiple of one tile embedding.

For each image size: the median time of one tile embedding (``encode``), of K region
prompts with the shared-prefix forward (``encode_regions``: one image forward, K cached
suffixes) and of the same K prompts as independent full forwards (``encode``), and the
largest difference between the two sets of vectors.

    .venv/bin/python benchmarks/bench_region_scoring.py [--sizes 56 224] [--k 16 30] [--reps 5]
    .venv/bin/python benchmarks/bench_region_scoring.py --model DIR --sizes 448 --reps 1 --dtype bf16
        # DIR from `geovec model fullsize DIR`: the Qwen2-VL-2B architecture, random weights
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402


def _median_s(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint folder (default: the tiny random model)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[56, 224], help="image edges")
    ap.add_argument("--k", type=int, nargs="+", default=[16, 30], help="boxes per tile")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-independent", action="store_true", help="skip the K independent forwards (slow at full size)")
    args = ap.parse_args(argv)

    import numpy as np

    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model
    from geovec.backend.types import EmbedInput

    print(machine(args.device))
    spec = args.model or str(write_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    base = load_embedder(spec, device=args.device, dtype=args.dtype)
    what = "tiny random model" if not args.model else f"{spec} ({sum(p.numel() for p in base.model.parameters()) / 1e9:.2f} B params)"
    print(f"model: {what}, {args.dtype}, {args.device}; tile 256 px read, K boxes on a grid covering it")
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    print(f"{'image':>6} {'K':>3} {'tile ms':>9} {'shared ms':>10} {'x tile':>7} {'independent ms':>15} {'x tile':>7} "
          f"{'max |diff|':>10}")
    for size in args.sizes:
        emb = base.with_image(base.preset.image.with_size(size))
        tile_s = _median_s(lambda: emb.encode([EmbedInput(emb.instructions["tile"], image=img)]), args.reps)  # noqa: B023
        for k in args.k:
            side = int(np.ceil(np.sqrt(k)))
            step = 256 / side
            boxes = [(i * step, j * step, (i + 1) * step, (j + 1) * step) for j in range(side) for i in range(side)][:k]
            shared_s = _median_s(lambda: emb.encode_regions(img, boxes), args.reps)  # noqa: B023
            line = f"{size:>6} {k:>3} {tile_s * 1e3:>9.1f} {shared_s * 1e3:>10.1f} {shared_s / tile_s:>7.2f}"
            if args.no_independent:
                print(line + f" {'-':>15} {'-':>7} {'-':>10}")
                continue
            inputs = emb.region_inputs(img, boxes)
            indep_s = _median_s(lambda: emb.encode(inputs, batch_size=1), max(1, args.reps // 2))  # noqa: B023
            diff = float(np.abs(emb.encode_regions(img, boxes) - emb.encode(inputs, batch_size=1)).max())
            print(line + f" {indep_s * 1e3:>15.1f} {indep_s / tile_s:>7.2f} {diff:>10.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
