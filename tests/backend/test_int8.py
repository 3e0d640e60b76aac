"""``--dtype int8``: the linear layers quantised on the CPU; vectors close to fp32; the index records it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.errors import InputError
from geovec.backend.model.embedder import load_embedder
from geovec.backend.types import EmbedInput


def test_int8_quantises_linear_layers_and_stays_close_to_fp32(tiny_model_dir: Path) -> None:
    import torch

    fp32 = load_embedder(str(tiny_model_dir), device="cpu", dtype="fp32")
    int8 = load_embedder(str(tiny_model_dir), device="cpu", dtype="int8")
    assert fp32.identity["dtype"] == "fp32" and int8.identity["dtype"] == "int8"
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.model.modules())  # every one quantised
    assert any(type(m).__name__ == "Linear" and "quantized" in type(m).__module__ for m in int8.model.modules())
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ins = fp32.instructions
    inputs = [EmbedInput(ins["tile"], image=img), EmbedInput(ins["text_query"], text="storage tanks by a pier")]
    a, b = fp32.encode(inputs), int8.encode(inputs)
    assert a.shape == b.shape and b.dtype == np.float32
    cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert (cos > 0.95).all() and not np.allclose(a, b), cos  # quantised: close, not identical
    boxes = [(0, 0, 32, 32), (16, 16, 64, 64)]
    ra, rb = fp32.encode_regions(img, boxes), int8.encode_regions(img, boxes)
    rcos = (ra * rb).sum(axis=1) / np.linalg.norm(ra, axis=1) / np.linalg.norm(rb, axis=1)
    assert (rcos > 0.95).all(), rcos


def test_int8_is_a_cpu_option() -> None:
    from geovec.backend.model.identity import resolve_dtype

    with pytest.raises(InputError, match="int8 is a CPU option"):
        resolve_dtype("int8", "cuda")


def test_index_built_in_int8_records_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    from geovec.backend.demo import write_scene

    (tmp_path / "r").mkdir()
    write_scene(tmp_path / "r" / "scene.tif", "mixed", size=128)
    res = subprocess.run([sys.executable, "-m", "geovec.backend", "index", str(tmp_path / "r"), "--index",
                          str(tmp_path / "idx"), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "int8",
                          "--tile-size", "64", "--no-progress", "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["model"]["dtype"] == "int8" and meta["count"] == 4
