"""GPU check: the full-size Qwen2-VL-2B architecture in bf16 on one GPU.

Prints, in one run on the same card:

* tiles/s of the indexing pipeline (``index_folder``: reader threads + processor,
  bf16 forward, SQLite + hnswlib writer) against a naive per-tile Hugging Face loop
  (read one tile, processor, ``Qwen2VLForConditionalGeneration(**inputs)`` with
  ``output_hidden_states``, last token), on the same synthetic rasters;
* MFU of both (model FLOPs per tile counted from the architecture, over the card's
  dense bf16 peak);
* region scoring: K = 16 and 30 boxes on one tile with the prefix-shared forward,
  as a multiple of one tile embedding, and regions/s;
* forward pass alone (one prepared batch on the device, as the pipeline batches it),
  tiles/s and MFU for each vision-tower variant: ``per-image`` (transformers' SDPA
  vision attention, one call per image), ``batched`` (one attention call per block for
  the batch of equal-size tiles) and ``compile`` (batched + ``torch.compile``'d vision
  blocks; its warm-up is timed apart). The pipeline and the region rows use the fastest
  variant, the naive loop always transformers' own forward. A variant that fails (e.g.
  compile) prints its one-line reason and the others go on.

The weights are random (built on the GPU, saved, then loaded through
``load_embedder`` like a downloaded checkpoint): only speed means anything. A summary
table ends the output; ``--out DIR`` writes it with every figure to ``DIR/results.json``.

    python benchmarks/gpu_check.py [--image-sizes 0 448] [--tiles 256] [--naive-tiles 24] [--out DIR]
    python benchmarks/gpu_check.py --variants per-image batched   # skip compile
    python benchmarks/gpu_check.py --smoke     # tiny model on the CPU: checks the script itself
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

#: Vision-tower variants: name -> (batched attention, compiled blocks).
VARIANTS = {"per-image": (False, False), "batched": (True, False), "compile": (True, True)}

#: Dense bf16 tensor-core peak (FLOP/s) by card name fragment.
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def model_flops(config, grid_thw: tuple[int, int, int], n_text: int) -> float:
    """FLOPs of one forward of an image with ``grid_thw`` patches plus ``n_text`` text tokens.

    2 FLOPs per multiply-accumulate; vision attention is full (within the image), decoder
    attention causal (half the score matrix). Embedding lookups and norms are ignored.
    """
    v = config.vision_config
    t, h, w = grid_thw
    p = t * h * w  # patches
    dv = v.embed_dim
    mlp = int(dv * v.mlp_ratio)
    vision = v.depth * (2 * p * (4 * dv * dv + 2 * dv * mlp) + 4 * p * p * dv)
    merged = p // (v.spatial_merge_size ** 2)
    hid = dv * v.spatial_merge_size ** 2
    vision += 2 * merged * (hid * hid + hid * v.hidden_size)  # the patch merger MLP
    tc = getattr(config, "text_config", None) or config
    hsz, inter, layers = tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers
    kv = tc.num_key_value_heads * (hsz // tc.num_attention_heads)
    tokens = merged + n_text
    text = layers * (2 * tokens * (2 * hsz * hsz + 2 * hsz * kv + 3 * hsz * inter) + 2 * tokens * tokens * hsz)
    return float(vision + text)


def write_rasters(folder: Path, n_scenes: int, size: int) -> Path:
    from geovec.backend.demo import write_scene

    folder.mkdir(parents=True, exist_ok=True)
    kinds = ["water", "forest", "urban", "mixed"]
    for i in range(n_scenes):
        write_scene(folder / f"scene_{i}.tif", kinds[i % 4], size=size, origin=(400000.0 + 50000 * i, 3300000.0),
                    seed=i)
    return folder


def naive_hf_loop(emb, folder: Path, tile: int, n: int, sync) -> tuple[int, float]:
    """Read -> processor -> HF forward (batch 1) -> last token, one tile at a time."""
    import torch

    from geovec.backend.raster.scan import scan_folder
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.backend.raster.tiling import GridSampler, read_tile
    from geovec.backend.types import EmbedInput, TilingParams

    params = TilingParams(tile_size=tile)
    import numpy as np

    prompt = emb.preset.build_prompt(EmbedInput(emb.instructions["tile"], image=np.zeros((8, 8, 3), np.uint8)))
    done, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for scene in scan_folder(folder).scenes:
            stretch = compute_stretch(scene)
            for w in GridSampler(scene, params):
                img, _ = read_tile(scene, w, stretch, out_size=tile)
                inputs = emb.processor(text=[prompt], images=[emb.image(img)], return_tensors="pt").to(emb.device)
                out = emb.model(**inputs, output_hidden_states=True)
                vec = torch.nn.functional.normalize(out.hidden_states[-1][:, -1].float(), dim=-1).cpu()
                assert vec.shape[0] == 1
                done += 1
                if done == n:
                    sync()
                    return done, time.perf_counter() - t0
    sync()
    return done, time.perf_counter() - t0


def forward_variants(emb, args, n: int, sync) -> list[dict[str, object]]:
    """Forward pass alone (one prepared batch of ``n`` tiles already on the device) per vision variant."""
    import numpy as np
    import torch

    from geovec.backend.model import forward as fwd
    from geovec.backend.model.vision import configure_vision, warm_up
    from geovec.backend.types import EmbedInput

    rng = np.random.default_rng(1)
    tiles = [rng.integers(0, 255, (args.tile_size, args.tile_size, 3), dtype=np.uint8) for _ in range(n)]
    batch = emb._on_device(emb.prepare([EmbedInput(emb.instructions["tile"], image=t) for t in tiles]))
    rows: list[dict[str, object]] = []
    ref = None  # the first variant's vectors: the others must give the same (up to bf16 rounding)
    for name in args.variants:
        batched, compiled = VARIANTS[name]
        row: dict[str, object] = {"variant": name}
        rows.append(row)
        try:
            configure_vision(emb.model, batched=batched, compile=compiled)
            if compiled:
                graphs = _dynamo_graphs()
                t0 = time.perf_counter()
                warm_up(emb, (n,))  # compiles the vision blocks for this image size (any batch size >= 2)
                sync()
                row["warmup_s"] = time.perf_counter() - t0
                row["graphs"] = _dynamo_graphs() - graphs
                print(f"compile warm-up: {row['warmup_s']:.1f} s, {row['graphs']} graph(s) for "
                      f"{len(fwd.backbone(emb.model).visual.blocks)} vision blocks")
            with torch.inference_mode():
                vecs = fwd.forward_full(emb.model, emb.preset.positions, batch).float()  # kernels, allocator
                sync()
                if ref is None:
                    ref = vecs
                row["max_abs_diff"] = float((vecs - ref).abs().max())
                t0 = time.perf_counter()
                for _ in range(args.fwd_reps):
                    fwd.forward_full(emb.model, emb.preset.positions, batch)
                sync()
            sec = time.perf_counter() - t0
            row.update(seconds=sec, tiles_per_s=n * args.fwd_reps / sec)
        except Exception as e:  # noqa: BLE001 - one failing variant (compile on a new stack) must not end the check
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            row["error"] = f"{type(e).__name__}: {reason}"
            print(f"forward {name:<9}: FAILED ({row['error']}); going on without it")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        finally:
            configure_vision(emb.model)
    return rows


def _dynamo_graphs() -> int:
    """Graphs dynamo has compiled so far in this process."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - a counter that moved: report nothing rather than fail
        return -1


def measure(emb, folder: Path, index: Path, args, peak: float | None, sync) -> dict[str, object]:
    """Naive loop vs pipeline, and region scoring, at ``emb``'s image size."""
    import numpy as np
    import torch

    from geovec.backend.indexing.run import batch_for_tokens, index_folder
    from geovec.backend.types import EmbedInput, TilingParams

    probe = emb.prepare([EmbedInput(emb.instructions["tile"], image=np.zeros((args.tile_size, args.tile_size, 3),
                                                                              np.uint8))])
    grid = tuple(int(x) for x in probe["image_grid_thw"][0])
    n_text = int(probe["input_ids"].shape[1]) - grid[0] * grid[1] * grid[2] // 4
    flops = model_flops(emb.model.config, grid, n_text)  # type: ignore[arg-type]
    print(f"--- images {emb.preset.image.describe()}: {grid[1] * grid[2]} patches -> {grid[1] * grid[2] // 4} image "
          f"tokens + {n_text} text tokens per tile; {flops / 1e12:.2f} TFLOP per tile")
    from geovec.backend.model.vision import configure_vision

    def mfu(rate: float) -> str:
        return f"{rate * flops / peak:.1%}" if peak else "n/a (unknown peak)"

    fwd_n = args.fwd_batch or (batch_for_tokens(emb, args.tile_size, args.batch_tokens, default=args.batch_size)
                               if args.batch_tokens else args.batch_size)
    forward = forward_variants(emb, args, fwd_n, sync)
    for row in forward:
        if "tiles_per_s" in row:
            row["mfu"] = (row["tiles_per_s"] * flops / peak) if peak else None
            warm = f", compile warm-up {row['warmup_s']:.1f} s" if row.get("warmup_s") is not None else ""
            print(f"forward {row['variant']:<9}: {fwd_n} tiles x {args.fwd_reps} in {row['seconds']:.2f} s = "
                  f"{row['tiles_per_s']:.2f} tiles/s, MFU {mfu(row['tiles_per_s'])}{warm}; "
                  f"vectors max |diff| {row['max_abs_diff']:.1e} vs {forward[0]['variant']}")
    ok = [r for r in forward if "tiles_per_s" in r]
    best = max(ok, key=lambda r: r["tiles_per_s"])["variant"] if ok else "per-image"
    configure_vision(emb.model)  # the naive loop: transformers' own forward
    with torch.inference_mode():  # warm-up (kernels, allocator) outside the timings
        emb.encode([EmbedInput(emb.instructions["tile"], image=np.zeros((64, 64, 3), np.uint8))])
    naive_n, naive_s = naive_hf_loop(emb, folder, args.tile_size, args.naive_tiles, sync)
    naive_rate = naive_n / naive_s
    batched, compiled = VARIANTS[best]
    configure_vision(emb.model, batched=batched, compile=compiled)  # already compiled at this size
    print(f"pipeline and regions use the {best} vision tower")
    t0 = time.perf_counter()
    summary = index_folder(folder, index, emb, params=TilingParams(tile_size=args.tile_size),
                           batch_size=args.batch_size, workers=args.workers, batch_tokens=args.batch_tokens or None)
    sync()
    pipe_s = time.perf_counter() - t0
    pipe_rate = summary.tiles / pipe_s

    print(f"naive HF loop: {naive_n} tiles in {naive_s:.1f} s = {naive_rate:.2f} tiles/s, MFU {mfu(naive_rate)}")
    print(f"pipeline:      {summary.tiles} tiles in {pipe_s:.1f} s = {pipe_rate:.2f} tiles/s, MFU {mfu(pipe_rate)} "
          f"(batch {batch_for_tokens(emb, args.tile_size, args.batch_tokens, default=args.batch_size) if args.batch_tokens else args.batch_size}"
          f" tiles, {args.workers} reader threads)")
    print(f"speed-up: {pipe_rate / naive_rate:.2f}x")
    img = np.random.default_rng(0).integers(0, 255, (args.tile_size, args.tile_size, 3), dtype=np.uint8)
    one = EmbedInput(emb.instructions["tile"], image=img)
    emb.encode([one])
    sync()
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        emb.encode([one])
    sync()
    tile_s = (time.perf_counter() - t0) / reps
    regions = {}
    for k in (16, 30):
        side = int(np.ceil(np.sqrt(k)))
        step = args.tile_size / side
        boxes = [(i * step, j * step, (i + 1) * step, (j + 1) * step) for j in range(side) for i in range(side)][:k]
        emb.encode_regions(img, boxes)
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            emb.encode_regions(img, boxes)
        sync()
        sec = (time.perf_counter() - t0) / reps
        regions[k] = {"seconds": sec, "x_tile": sec / tile_s, "regions_per_s": k / sec}
        print(f"regions: K={k} boxes on one tile {sec * 1000:.1f} ms = {sec / tile_s:.2f}x one tile embedding "
              f"({tile_s * 1000:.1f} ms), {k / sec:.1f} regions/s")
    configure_vision(emb.model)
    return {"image": emb.preset.image.describe(), "tflop_per_tile": flops / 1e12, "forward": forward,
            "forward_batch": fwd_n, "best_variant": best, "pipeline_tiles": summary.tiles,
            "naive_tiles_per_s": naive_rate,
            "pipeline_tiles_per_s": pipe_rate, "speedup": pipe_rate / naive_rate,
            "naive_mfu": (naive_rate * flops / peak) if peak else None,
            "pipeline_mfu": (pipe_rate * flops / peak) if peak else None, "tile_embed_s": tile_s, "regions": regions}


def summary_table(runs: list[dict], label: str) -> list[str]:
    """The compact end-of-run table: forward alone per variant, then naive loop vs pipeline, per image size."""
    def pct(x: object) -> str:
        return f"{x:.1%}" if isinstance(x, float) else "n/a"

    lines = ["", f"=== summary: {label} ===", f"{'image':<34} {'what':<22} {'tiles/s':>9} {'MFU':>7}  note"]
    for r in runs:
        for f in r["forward"]:
            what = f"forward {f['variant']}"
            if "error" in f:
                lines.append(f"{r['image']:<34} {what:<22} {'-':>9} {'-':>7}  failed: {str(f['error'])[:80]}")
                continue
            note = f"batch {r['forward_batch']}, max |diff| {f['max_abs_diff']:.0e}"
            if f.get("warmup_s") is not None:
                note += f", compile warm-up {f['warmup_s']:.1f} s ({f.get('graphs')} graph(s))"
            lines.append(f"{r['image']:<34} {what:<22} {f['tiles_per_s']:>9.2f} {pct(f.get('mfu')):>7}  {note}")
        lines.append(f"{r['image']:<34} {'naive HF loop':<22} {r['naive_tiles_per_s']:>9.2f} "
                     f"{pct(r['naive_mfu']):>7}  per-image, batch 1")
        lines.append(f"{r['image']:<34} {'pipeline':<22} {r['pipeline_tiles_per_s']:>9.2f} "
                     f"{pct(r['pipeline_mfu']):>7}  {r['best_variant']}, {r['pipeline_tiles']} tiles, "
                     f"{r['speedup']:.2f}x the naive loop")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU (checks the script)")
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[0, 448],
                    help="model image edges to measure (0 = the preset's: 1344 px, fed as 980 px = 1,225 tokens)")
    ap.add_argument("--tiles", type=int, default=256, help="tiles indexed by the pipeline")
    ap.add_argument("--naive-tiles", type=int, default=24, help="tiles through the naive loop")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-tokens", type=int, default=32768, help="pipeline batches by token count (0: --batch-size)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="vision-tower variants timed on the forward pass alone")
    ap.add_argument("--fwd-reps", type=int, default=3, help="timed forward passes per variant")
    ap.add_argument("--fwd-batch", type=int, default=None,
                    help="tiles in the forward-alone batch (default: the pipeline's; 8 with --smoke)")
    ap.add_argument("--out", default=None, help="folder for results.json")
    args = ap.parse_args(argv)
    if args.fwd_batch is None:
        args.fwd_batch = 8 if args.smoke else 0

    import torch
    import transformers

    from geovec.backend.model.embedder import load_embedder

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --smoke to check the script on the CPU)", file=sys.stderr)
        return 2
    print(machine(device))
    print(f"transformers {transformers.__version__}")
    work = Path(tempfile.mkdtemp(prefix="geovec-gpu-check-"))
    results: dict[str, object] = {"machine": machine(device), "smoke": args.smoke}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    try:
        t0 = time.perf_counter()
        if args.smoke:
            from geovec.backend.model.tiny import write_tiny_model

            ckpt = write_tiny_model(work / "model")
            dtype = "fp32"
        else:
            from geovec.backend.model.fullsize import write_fullsize_model

            ckpt = write_fullsize_model(work / "model", device="cuda")
            torch.cuda.empty_cache()
            dtype = "bf16"
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = load_embedder(str(ckpt), device=device, dtype=dtype, batched_vision=False, compile=False)
        sync()
        load_s = time.perf_counter() - t0
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        print(f"model: {'tiny random' if args.smoke else 'Qwen2-VL-2B architecture, random weights'}, "
              f"{sum(p.numel() for p in emb.model.parameters()) / 1e9:.2f} B params, {dtype}, images "
              f"{emb.preset.image.describe()}; built {build_s:.1f} s, loaded {load_s:.1f} s")

        import numpy as np

        # one scene holding every tile: the pipeline cuts batches per scene, so small scenes would cap them
        side = int(np.ceil(np.sqrt(args.tiles))) * args.tile_size
        folder = write_rasters(work / "rasters", 1, side)
        print(f"data: one synthetic {side} x {side} px scene, {args.tile_size} px tiles")
        base_emb = emb
        runs = []
        for size in args.image_sizes:
            emb = base_emb.with_image(base_emb.preset.image.with_size(size or None))
            runs.append(measure(emb, folder, work / f"index-{size}", args, peak, sync))
        results.update(card=name, params_b=sum(p.numel() for p in emb.model.parameters()) / 1e9, dtype=dtype,
                       build_s=build_s, load_s=load_s, peak_flops=peak, runs=runs)
        if device == "cuda":
            results["max_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
            print(f"peak GPU memory {results['max_memory_gb']:.1f} GB")
        label = (f"{'tiny random model' if args.smoke else 'Qwen2-VL-2B architecture, random weights'}, {dtype}, "
                 f"synthetic {args.tile_size} px tiles, {name}")
        results["summary"] = summary_table(runs, label)
        print("\n".join(results["summary"]))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
