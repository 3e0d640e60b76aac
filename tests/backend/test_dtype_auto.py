"""What ``--dtype auto`` means on CPU: detected from the CPU's flags, or pinned by GEOVEC_CPU_DTYPE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geovec.backend.errors import InputError
from geovec.backend.model import identity


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


def test_auto_on_cpu_follows_the_cpu_flags_when_not_pinned(monkeypatch) -> None:
    monkeypatch.delenv("GEOVEC_CPU_DTYPE", raising=False)
    native = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert identity.cpu_has_native_bf16() is native
    assert identity.resolve_dtype("auto", "cpu") is (torch.bfloat16 if native else torch.float32)
    assert identity.resolve_dtype("auto", "cuda", cuda_dtype="fp16") is torch.float16


@pytest.mark.parametrize("pinned, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                              ("FP32", torch.float32)])
def test_geovec_cpu_dtype_pins_what_auto_means(monkeypatch, pinned, expected) -> None:
    monkeypatch.setenv("GEOVEC_CPU_DTYPE", pinned)
    assert identity.resolve_dtype("auto", "cpu") is expected
    assert identity.resolve_dtype("fp32", "cpu") is torch.float32  # an explicit dtype wins


def test_a_bad_geovec_cpu_dtype_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setenv("GEOVEC_CPU_DTYPE", "int4")
    with pytest.raises(InputError, match="GEOVEC_CPU_DTYPE='int4' is not bf16 or fp32"):
        identity.resolve_dtype("auto", "cpu")
