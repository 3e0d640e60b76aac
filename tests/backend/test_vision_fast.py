"""The batched vision forward equals transformers' per-image one; mixed sizes fall back; options are wired."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geovec.backend.demo import write_sample_folder
from geovec.backend.errors import InputError
from geovec.backend.model import forward as fwd
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.presets import ImagePolicy
from geovec.backend.model.tiny import write_tiny_model
from geovec.backend.model.vision import CompileError, configure_vision, vision_mode, vision_options
from geovec.backend.types import EmbedInput

TOL = 1e-5


class _SdpaCalls(torch.overrides.TorchFunctionMode):
    """Records (batch, has_mask) of every scaled_dot_product_attention call (observes, changes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, bool]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            self.calls.append((int(args[0].shape[0]), mask is not None))
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("sharp-vision") / "m", seed=11, initializer_range=0.3)


@pytest.fixture(scope="module")
def per_image(sharp_dir):
    return load_embedder(str(sharp_dir), device="cpu", dtype="fp32", batched_vision=False, compile=False)


@pytest.fixture(scope="module")
def batched(sharp_dir):
    return load_embedder(str(sharp_dir), device="cpu", dtype="fp32", batched_vision=True)


def _images(shapes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def _tower(emb, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, bool]]]:
    """The vision tower's output on ``images``, their grids and the attention calls it made."""
    batch = emb._on_device(emb.prepare([EmbedInput(emb.instructions["tile"], image=i) for i in images]))
    visual = fwd.backbone(emb.model).visual
    with torch.inference_mode(), _SdpaCalls() as seen:
        out = visual(batch["pixel_values"].type(visual.dtype), grid_thw=batch["image_grid_thw"])
    return out, batch["image_grid_thw"], seen.calls


def test_batched_equals_per_image_for_equal_sizes(per_image, batched) -> None:
    assert vision_mode(per_image.model) == "per-image" and vision_mode(batched.model) == "batched"
    imgs = _images([(64, 64)] * 5)
    ref, grid, _ = _tower(per_image, imgs)
    out, _, calls = _tower(batched, imgs)
    depth = len(fwd.backbone(batched.model).visual.blocks)
    assert calls == [(5, False)] * depth  # one unmasked call per block, the images as the batch
    assert out.shape == ref.shape and float((out - ref).abs().max()) <= TOL * float(ref.abs().max())
    inputs = [EmbedInput(batched.instructions["tile"], image=i) for i in imgs]
    a, b = per_image.encode(inputs, batch_size=5), batched.encode(inputs, batch_size=5)
    assert np.abs(a - b).max() <= TOL
    assert np.abs(b[0] - b[1]).max() > 1e-3  # the images do change the vectors


@pytest.mark.parametrize("shapes", [[(56, 56), (56, 112), (112, 56)], [(56, 112), (112, 56)]],
                         ids=["mixed-counts", "same-count-other-shape"])
def test_mixed_sizes_fall_back_to_per_image(per_image, batched, shapes) -> None:
    policy = ImagePolicy("smart", min_tokens=4, max_tokens=64)
    ref_emb, emb = per_image.with_image(policy), batched.with_image(policy)
    imgs = _images(shapes, seed=1)
    ref, grid, _ = _tower(ref_emb, imgs)
    assert len({tuple(g[1:]) for g in grid.tolist()}) == len(shapes)  # really different grids
    out, _, calls = _tower(emb, imgs)
    assert all(n == 1 for n, _ in calls) or all(m for _, m in calls)  # per image (4.53+) or masked (4.52)
    assert float((out - ref).abs().max()) == 0.0  # transformers' own forward
    inputs = [EmbedInput(emb.instructions["tile"], image=i) for i in imgs]
    assert np.abs(ref_emb.encode(inputs, batch_size=4) - emb.encode(inputs, batch_size=4)).max() <= TOL


def test_regions_with_batched_vision_equal_independent_forwards(per_image, batched) -> None:
    img = _images([(64, 64)], seed=3)[0]
    boxes = [(0.0, 0.0, 32.0, 32.0), (32.0, 0.0, 64.0, 32.0), (5.0, 7.0, 30.0, 41.0), (0.0, 0.0, 64.0, 64.0)]
    shared = batched.encode_regions(img, boxes, batch_size=32)
    one_by_one = np.stack([per_image.encode(per_image.region_inputs(img, [b]), batch_size=1)[0] for b in boxes])
    assert np.abs(shared - one_by_one).max() <= 1e-4
    assert np.abs(shared[0] - shared[1]).max() > 1e-3


def test_switching_back_restores_transformers_forward(sharp_dir) -> None:
    emb = load_embedder(str(sharp_dir), device="cpu", dtype="fp32", batched_vision=True)
    visual = fwd.backbone(emb.model).visual
    assert "forward" in visual.__dict__
    configure_vision(emb.model, batched=True)  # again: still wraps transformers' forward, not itself
    assert visual.__dict__["_geovec_vision"]["original"].__func__ is type(visual).forward
    configure_vision(emb.model)
    assert "forward" not in visual.__dict__ and vision_mode(emb.model) == "per-image"


def test_options_from_environment(monkeypatch) -> None:
    monkeypatch.delenv("GEOVEC_BATCHED_VISION", raising=False)
    monkeypatch.delenv("GEOVEC_COMPILE", raising=False)
    assert vision_options() == (False, False)
    monkeypatch.setenv("GEOVEC_BATCHED_VISION", "1")
    assert vision_options() == (True, False)
    assert vision_options(batched=False) == (False, False)
    monkeypatch.setenv("GEOVEC_COMPILE", "yes")
    assert vision_options(batched=False) == (True, True)  # compile implies batched
    monkeypatch.setenv("GEOVEC_COMPILE", "maybe")
    with pytest.raises(InputError, match="GEOVEC_COMPILE='maybe'"):
        vision_options()


def test_compile_failure_is_a_clean_error(sharp_dir) -> None:
    """A broken C++ toolchain (inductor's CPU backend) surfaces as CompileError naming the option."""
    import torch._dynamo
    import torch._inductor.config as inductor

    emb = load_embedder(str(sharp_dir), device="cpu", dtype="fp32", compile=True)
    assert vision_mode(emb.model) == "batched+compile"
    torch._dynamo.reset()
    try:
        with inductor.patch({"cpp.cxx": (None, "/nonexistent/c++"), "fx_graph_cache": False}), \
                pytest.raises(CompileError, match="torch.compile of the vision blocks failed") as err:
            emb.encode([EmbedInput(emb.instructions["tile"], image=i) for i in _images([(64, 64)] * 2)], batch_size=2)
    finally:
        torch._dynamo.reset()
    assert "GEOVEC_COMPILE" in err.value.hint


def test_cli_compile_flag_fails_cleanly(sharp_dir, tmp_path: Path) -> None:
    """``geovec index --compile`` reaches the compiler (none here): one error line naming the flag, no traceback."""
    folder = write_sample_folder(tmp_path / "rasters", size=64)
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
           "GEOVEC_TOKEN_FILE": "/nonexistent/geovec-server.json"}
    env.pop("GEOVEC_COMPILE", None)
    proc = subprocess.run([sys.executable, "-m", "geovec.backend", "index", str(folder), "--index",
                           str(tmp_path / "idx"), "--model", str(sharp_dir), "--tile-size", "32", "--no-progress",
                           "--compile"], capture_output=True, text=True, timeout=300, env=env)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err[-1].startswith("geovec: error: torch.compile of the vision blocks failed") and "--compile" in err[-1]


@pytest.mark.slow
def test_compiled_equals_eager(per_image, sharp_dir) -> None:
    """Inductor on the CPU (needs a C++ compiler): the compiled blocks give the eager vectors."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    emb = load_embedder(str(sharp_dir), device="cpu", dtype="fp32", compile=True)
    torch._dynamo.reset()
    counters.clear()
    inputs = [EmbedInput(emb.instructions["tile"], image=i) for i in _images([(64, 64)] * 3, seed=5)]
    got = emb.encode(inputs, batch_size=3)
    assert np.abs(got - per_image.encode(inputs, batch_size=3)).max() <= 1e-4
    configure_vision(emb.model)
    configure_vision(emb.model, compile=True)  # off and on again: the same compiled function
    got2 = emb.encode(inputs[:2], batch_size=2)  # another batch size
    assert np.abs(got2 - got[:2]).max() <= 1e-4
    # one graph for both blocks and both batch sizes
    assert counters["stats"]["unique_graphs"] == 1 and len(fwd.backbone(emb.model).visual.blocks) == 2
