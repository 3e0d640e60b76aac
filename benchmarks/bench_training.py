"""Training throughput (pairs/s) of the contrastive trainer's step.

Default: the tiny random Qwen2-VL on CPU, full fine-tuning, GradCache step with
in-batch negatives over synthetic image/text pairs (the same prepare/forward/loss
code as ``geovec train``).

``--full-size``: the full Qwen2-VL-2B architecture (random weights built from its
config, no download) + LoRA + bf16 autocast + gradient checkpointing + GradCache,
on CUDA only; refuses cleanly elsewhere.

    .venv/bin/python benchmarks/bench_training.py [--steps 5 --batch 16 --chunk 8]
    .venv/bin/python benchmarks/bench_training.py --full-size --batch 64 --chunk 16
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from geovec.backend.types import EmbedInput
from geovec.training.gradcache import GradCache
from geovec.training.loss import InfoNCELoss
from geovec.training.trainer import torch_module

# Qwen/Qwen2-VL-2B-Instruct config.json (sizes only; token ids come from the tokenizer in use)
QWEN2VL_2B = dict(
    hidden_size=1536, intermediate_size=8960, num_attention_heads=12, num_hidden_layers=28, num_key_value_heads=2,
    max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1_000_000.0, vocab_size=151936,
    tie_word_embeddings=True,
)
QWEN2VL_2B_VISION = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=1536, patch_size=14,
                         spatial_merge_size=2, temporal_patch_size=2)


def machine(device: str) -> str:
    import os

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    return (f"machine: {platform.platform()} | python {platform.python_version()} | cpus {os.cpu_count()} | "
            f"torch {torch.__version__} (threads {torch.get_num_threads()}) | device {device} | gpu {gpu}")


def synthetic_pairs(n: int, preset, image_size: int, seed: int = 0) -> list[tuple[EmbedInput, EmbedInput]]:
    rng = np.random.default_rng(seed)
    words = ["water", "forest", "developed", "shrubland", "sediment", "herbaceous", "agriculture"]
    out = []
    for i in range(n):
        img = rng.integers(0, 255, size=(image_size, image_size, 3), dtype=np.uint8)
        out.append((EmbedInput(instruction=preset.instructions["text_query"], text=f"a satellite image of {words[i % 7]}"),
                    EmbedInput(instruction=preset.instructions["tile"], image=img)))
    return out


def full_size_config(small: dict):
    """The Qwen2-VL-2B sizes on top of a (tiny) config dict, keeping its token ids."""
    from transformers import Qwen2VLConfig

    d = dict(small)
    text = {**d.get("text_config", {}), **QWEN2VL_2B, "layer_types": None,
            "rope_scaling": {"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]}}
    d.update(QWEN2VL_2B)
    d.pop("layer_types", None)
    d["text_config"] = text
    d["vision_config"] = {**d.get("vision_config", {}), **QWEN2VL_2B_VISION}
    return Qwen2VLConfig(**d)


def full_size_model(embedder, lora_r: int) -> None:
    """Swap the embedder's model for the full Qwen2-VL-2B architecture with random weights + LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    cfg = full_size_config(torch_module(embedder).config.to_dict())
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    embedder.model = model
    embedder.device = torch.device("cuda")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-size", action="store_true", help="Qwen2-VL-2B architecture + LoRA + bf16 on CUDA")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="pairs per step")
    ap.add_argument("--chunk", type=int, default=8, help="GradCache chunk (rows per forward)")
    ap.add_argument("--image-size", type=int, default=None, help="model input edge (default: preset)")
    ap.add_argument("--lora-r", type=int, default=16)
    args = ap.parse_args(argv)
    if args.full_size and not torch.cuda.is_available():
        print("--full-size needs a CUDA GPU (the 2B model in bf16 with LoRA); none is visible here. "
              "Run it on a GPU machine, or drop --full-size for the tiny CPU benchmark.", file=sys.stderr)
        return 2
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model

    device = "cuda" if args.full_size else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        embedder = load_embedder(str(write_tiny_model(tmp)), device=device, torch_dtype=torch.float32)
        if args.full_size:
            full_size_model(embedder, args.lora_r)
        model = torch_module(embedder)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        size = args.image_size or int(embedder.preset.image_size)
        pairs = synthetic_pairs(args.batch, embedder.preset, size)
        loss_fn = InfoNCELoss(0.02)
        groups = torch.arange(args.batch) % 7

        def encode(batch):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.full_size):
                return embedder.forward(batch).float()

        def step() -> float:
            chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]
            q = [embedder.prepare([p[0] for p in c]) for c in chunks]
            d = [embedder.prepare([p[1] for p in c]) for c in chunks]
            opt.zero_grad(set_to_none=True)
            loss = GradCache(encode, functools.partial(loss_fn, groups=groups)).step(q, d)
            opt.step()
            return loss

        for _ in range(args.warmup):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in params)
    print(machine(device))
    print(f"model: {'Qwen2-VL-2B architecture (random) + LoRA r=' + str(args.lora_r) if args.full_size else 'tiny random Qwen2-VL, full fine-tuning'}"
          f" | params {n_params / 1e6:.2f} M, trainable {n_train / 1e6:.2f} M | image {size}px")
    print(f"batch {args.batch} pairs, GradCache chunk {args.chunk}, {args.steps} timed steps"
          f"{' | bf16 autocast + gradient checkpointing' if args.full_size else ' | fp32'}")
    print(f"training throughput: {args.batch * args.steps / dt:.2f} pairs/s ({dt / args.steps:.3f} s/step)")
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
