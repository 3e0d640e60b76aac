"""What makes two embedders give the same vectors: weights fingerprint, dtype, image size.

An index is bound to the model that built it. A name is not enough (a retrained
checkpoint keeps its folder name), nor is a hash of tensor names and shapes (any
fine-tuned copy shares them), and hashing gigabytes at every load is slow. The
fingerprint hashes, per weight file, its size, its safetensors header and 64
evenly spaced 4 KiB blocks of its data — any training step changes nearly every
block — plus the config, the sharded-weights index and any adapter file in full.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

_SAMPLES = 64
_BLOCK = 4096
_SMALL = 1 << 20  # files up to this size are hashed whole
DTYPES = ("auto", "bf16", "fp16", "fp32")


def _hash_file(h: Any, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with path.open("rb") as f:
        if size <= _SMALL:
            h.update(f.read())
            return
        if path.suffix == ".safetensors":
            head = f.read(8)
            n = int.from_bytes(head, "little")
            h.update(head + f.read(min(n, size - 8)))
        for i in range(_SAMPLES):
            f.seek(int(i * (size - _BLOCK) / max(_SAMPLES - 1, 1)))
            h.update(f.read(_BLOCK))


def weights_fingerprint(*folders: str | Path | None) -> str:
    """A short content hash of the checkpoint (and adapter) folders' config and weight files."""
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        p = Path(folder)
        names = sorted(n for n in os.listdir(p) if n.endswith((".safetensors", ".bin", ".json"))
                       and n not in ("geovec.json",) and not n.startswith("."))
        for name in names:
            if (p / name).is_file():
                _hash_file(h, p / name)
    return h.hexdigest()[:16]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 beats fp32 on CPU.

    ``GEOVEC_CPU_DTYPE=fp32|bf16`` overrides the detection (what ``auto`` means on CPU), so runs that
    must agree across machines (tests, parity checks) can pin it.
    """
    forced = os.environ.get("GEOVEC_CPU_DTYPE", "").strip().lower()
    if forced in ("bf16", "fp32"):
        return forced == "bf16"
    if forced:
        raise InputError(f"GEOVEC_CPU_DTYPE={forced!r} is not bf16 or fp32",
                         "unset it (detect from the CPU) or set it to bf16 or fp32")
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str | None, device_type: str, *, cuda_dtype: str = "bf16") -> Any:
    """``auto|bf16|fp16|fp32`` -> a torch dtype for ``device_type``.

    auto: the preset's CUDA dtype on CUDA, bf16 on CPUs with native bf16, else fp32.
    """
    import torch

    name = (name or "auto").lower()
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name == "auto":
        if device_type == "cuda":
            return table[cuda_dtype]
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if name not in table:
        raise InputError(f"dtype {name!r} is not one of {', '.join(DTYPES)}",
                         "use auto (bf16 on GPUs and bf16-capable CPUs, else fp32), bf16, fp16 or fp32")
    if name == "fp16" and device_type == "cpu":
        raise InputError("dtype fp16 on CPU is slow and inaccurate in PyTorch", "use --dtype bf16 or fp32 on CPU")
    return table[name]


def dtype_name(dtype: Any) -> str:
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}.get(dtype, str(dtype))
