"""GPU probe: the forward pass of the Qwen2-VL-2B architecture (random weights, bf16) under each SDPA backend,
eager and compiled (batched vision attention), then a CUDA kernel profile of the compiled forward.

Prints tiles/s per (image size, compile, backend) on one prepared batch (14 tiles at 1344 px, 120 at
448 px) and ``torch.profiler``'s top CUDA kernels. Needs CUDA and the backend's packages (run it with
the Python and PYTHONPATH that ``benchmarks/gpu_check.sh`` sets up).

    python benchmarks/gpu_sdpa_probe.py
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

from geovec.backend.model import forward as fwd  # noqa: E402
from geovec.backend.model.embedder import load_embedder  # noqa: E402
from geovec.backend.model.fullsize import write_fullsize_model  # noqa: E402
from geovec.backend.model.vision import configure_vision  # noqa: E402
from geovec.backend.types import EmbedInput  # noqa: E402


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_sdpa_probe: no CUDA device", file=sys.stderr)
        return 2
    print(machine("cuda"))
    work = Path(tempfile.mkdtemp())
    ckpt = write_fullsize_model(work / "m", device="cuda")
    torch.cuda.empty_cache()
    base = load_embedder(str(ckpt), device="cuda", dtype="bf16")
    print(torch.__version__, torch.cuda.get_device_name(0))
    for size, n in [(1344, 14), (448, 120)]:
        emb = base.with_image(base.preset.image.with_size(size if size != 1344 else None))
        rng = np.random.default_rng(1)
        batch = emb._on_device(emb.prepare([EmbedInput(emb.instructions["tile"],
                                                       image=rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
                                            for _ in range(n)]))
        for comp in (False, True):
            configure_vision(emb.model, batched=True, compile=comp)
            for name, be in [("default", None), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                             ("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
                try:
                    ctx = sdpa_kernel([be]) if be is not None else torch.autograd.grad_mode.no_grad()
                    with ctx, torch.inference_mode():
                        fwd.forward_full(emb.model, emb.preset.positions, batch)
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        for _ in range(3):
                            fwd.forward_full(emb.model, emb.preset.positions, batch)
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    print(f"{size} compile={comp} sdpa={name}: {3 * n / dt:.2f} tiles/s", flush=True)
                except Exception as e:  # noqa: BLE001 - a backend without a kernel for these inputs
                    print(f"{size} compile={comp} sdpa={name}: FAILED {type(e).__name__}: {str(e)[:150]}", flush=True)
        configure_vision(emb.model, batched=True, compile=True)
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            fwd.forward_full(emb.model, emb.preset.positions, batch)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70))
        configure_vision(emb.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
