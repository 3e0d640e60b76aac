"""K region prompts on one image: one image forward + K cached suffixes == K full forwards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.model import forward as fwd
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.tiny import write_tiny_model

TOL = 1e-4


def _grid_boxes(size: int, n: int) -> list[tuple[float, float, float, float]]:
    step = size / n
    return [(i * step, j * step, (i + 1) * step, (j + 1) * step) for j in range(n) for i in range(n)]


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("sharp") / "m", seed=7, initializer_range=0.3)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def _independent(emb, image, boxes, **kw) -> np.ndarray:
    return np.stack([emb.encode(emb.region_inputs(image, [b], **kw), batch_size=1)[0] for b in boxes])


def test_shared_prefix_equals_independent_full_forwards(sharp_dir, image) -> None:
    emb = load_embedder(str(sharp_dir), device="cpu")
    boxes = _grid_boxes(64, 4) + [(5, 7, 30, 41), (0, 0, 64, 64)]
    shared = emb.encode_regions(image, boxes, batch_size=32)
    full = _independent(emb, image, boxes)
    assert shared.shape == (18, emb.dim) and shared.dtype == np.float32
    assert np.abs(shared - full).max() <= TOL
    assert np.abs(shared[0] - shared[1]).max() > 1e-3  # the boxes do change the vectors


def test_text_and_location_in_the_suffix_and_batches(sharp_dir, image) -> None:
    emb = load_embedder(str(sharp_dir), device="cpu")
    boxes = _grid_boxes(64, 3)
    kw = {"text": "next to water", "latlon": (29.69, -82.03)}
    shared = emb.encode_regions(image, boxes, batch_size=4, **kw)  # 3 batches: 4 + 4 + 1 (K=1 falls back)
    assert np.abs(shared - _independent(emb, image, boxes, **kw)).max() <= TOL


def test_one_image_forward_per_tile(sharp_dir, image, monkeypatch) -> None:
    """The vision tower runs once for K boxes (not K times)."""
    emb = load_embedder(str(sharp_dir), device="cpu")
    calls = []
    visual = fwd.backbone(emb.model).visual
    orig = visual.forward
    monkeypatch.setattr(visual, "forward", lambda *a, **k: calls.append(1) or orig(*a, **k))
    emb.encode_regions(image, _grid_boxes(64, 4), batch_size=32)
    assert len(calls) == 1


@pytest.fixture(scope="module")
def rope_3d(tmp_path_factory: pytest.TempPathFactory):
    """A chat-layout model (vision start/end tokens) with Qwen2-VL's 3-D multimodal positions."""
    d = write_tiny_model(tmp_path_factory.mktemp("rope3d") / "m", seed=9, initializer_range=0.3,
                         preset="gme-qwen2vl-2b")
    emb = load_embedder(str(d), device="cpu", image_size=56)
    emb.preset = replace(emb.preset, positions="rope_index")
    return emb


def test_shared_prefix_with_3d_positions(rope_3d, image) -> None:
    emb = rope_3d
    boxes = _grid_boxes(64, 4)
    pos = fwd.position_ids(emb.model, "rope_index", *_ids_mask_grid(emb, image, boxes))
    assert bool((pos[1] != pos[2]).any())  # really 3-D: height and width positions differ in the image
    assert np.abs(emb.encode_regions(image, boxes) - _independent(emb, image, boxes)).max() <= TOL


def test_wrong_suffix_positions_break_equality(rope_3d, image, monkeypatch) -> None:
    """The equality test can fail: suffix positions counted as plain 1-D offsets P..L-1 are wrong."""
    emb = rope_3d
    boxes = _grid_boxes(64, 4)
    full = _independent(emb, image, boxes)
    monkeypatch.setattr(fwd, "position_ids", lambda model, mode, ids, mask, grid: _plain(ids, mask))
    wrong = emb.encode_regions(image, boxes)
    assert np.abs(wrong - full).max() > 10 * TOL


def _plain(ids, mask):
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return pos.unsqueeze(0).expand(3, -1, -1)


def _ids_mask_grid(emb, image, boxes):
    b = emb.prepare_regions(image, boxes)
    return b["input_ids"], b["attention_mask"], b["image_grid_thw"].repeat(len(boxes), 1)


@pytest.mark.parametrize("preset", ["tiny", "gme-qwen2vl-2b"])
def test_region_tokens_equal_the_processors(tmp_path, image, preset) -> None:
    """Prefix tokenised once + each tail == the processor on each whole prompt (both layouts)."""
    emb = load_embedder(str(write_tiny_model(tmp_path / "m", preset=preset)), device="cpu", image_size=56)
    boxes = _grid_boxes(64, 3)
    ours = emb.prepare_regions(image, boxes, text="by the river")
    theirs = emb.prepare(emb.region_inputs(image, boxes, text="by the river"))
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert ours["attention_mask"].tolist() == theirs["attention_mask"].tolist()
    assert ours["image_grid_thw"].shape == (1, 3)
