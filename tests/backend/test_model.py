"""The encoder contract on the tiny model, and the presets' literal formats."""

from __future__ import annotations

import numpy as np
import pytest

from geovec.backend.errors import InputError, NotFoundError
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.presets import PRESETS, get_preset
from geovec.backend.types import EmbedInput


def _images(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


IMG = np.zeros((448, 448, 3), np.uint8)


@pytest.mark.parametrize("key, kwargs, expected", [
    ("tile", {"image": IMG}, "<|image_pad|>\nRepresent the given image.\n"),
    ("image_query", {"image": IMG}, "<|image_pad|>\nRepresent the given image.\n"),
    ("text_query", {"text": " storage tanks "},
     "Find me an overhead satellite image that matches the given caption: storage tanks\n"),
    ("text_doc", {"text": "a pier"}, "a pier"),
    ("region_query", {"image": IMG, "bbox": (0, 112, 224, 448)},
     "<|image_pad|>\nRepresent the region <|box_start|>(0,250),(500,1000)<|box_end|> of the given image.\n"),
    ("region_query", {"image": IMG, "bbox": (0, 112, 224, 448), "text": "next to water"},
     "<|image_pad|>\nRepresent the region <|box_start|>(0,250),(500,1000)<|box_end|> of the given image. "
     "next to water\n"),
    ("point_query", {"image": IMG, "latlon": (29.6889, -82.0311)},
     "<|image_pad|>\nRepresent the given image taken at latitude 29.6889, longitude -82.0311.\n"),
    ("referring_query", {"text": "the circular storage tanks next to the pier"},
     "Find the region of an overhead satellite image described by: the circular storage tanks next to the pier\n"),
    ("vqa", {"image": IMG, "text": "Is there water?"},
     "<|image_pad|>\nRepresent the given image with the following question: Is there water?\n"),
    ("classification", {"image": IMG}, "<|image_pad|>\nRepresent the given image for classification\n"),
])
def test_vlm2vec_golden_prompts(key: str, kwargs: dict, expected: str) -> None:
    """VLM2Vec's MMEB evaluation layout: image token, newline, instruction, trailing newline (pooled)."""
    p = get_preset("vlm2vec-qwen2vl-2b")
    assert p.build_prompt(EmbedInput(p.instructions[key], **kwargs)) == expected
    assert p.adapter == "TIGER-Lab/VLM2Vec-Qwen2VL-2B" and p.base_model == "Qwen/Qwen2-VL-2B-Instruct"


def test_vqa_question_filled_by_caller_or_as_text() -> None:
    p = get_preset("vlm2vec-qwen2vl-2b")
    by_text = p.build_prompt(EmbedInput(p.instructions["vqa"], image=IMG, text="How many ships?"))
    by_caller = p.build_prompt(EmbedInput(p.instructions["vqa"].replace("{question}", "How many ships?"), image=IMG))
    assert by_text == by_caller


_GME_HEAD = "<|im_start|>system\n"
_GME_TAIL = "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
_VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.mark.parametrize("key, kwargs, system, user", [
    ("tile", {"image": IMG}, "You are a helpful assistant.", _VISION),
    ("text_doc", {"text": "a pier"}, "You are a helpful assistant.", "a pier"),
    ("text_query", {"text": "a pier"}, "Find an overhead satellite image that matches the given text.", "a pier"),
    ("region_query", {"image": IMG, "bbox": (0, 112, 224, 448)},
     "Represent the marked region of the given satellite image.",
     _VISION + "<|box_start|>(0,250),(500,1000)<|box_end|>"),
    ("point_query", {"image": IMG, "latlon": (10.0, 20.0)},
     "Represent the given satellite image taken at the given location.",
     _VISION + "latitude 10.0000, longitude 20.0000"),
    ("vqa", {"image": IMG, "text": "Is there water?"},
     "Represent the given satellite image with the following question.", _VISION + "Is there water?"),
])
def test_gme_golden_prompts(key: str, kwargs: dict, system: str, user: str) -> None:
    """GME's chat layout: the instruction as system turn, image then box/lat-lon/text in the user turn."""
    p = get_preset("gme-qwen2vl-2b")
    expected = f"{_GME_HEAD}{system}<|im_end|>\n<|im_start|>user\n{user}{_GME_TAIL}"
    assert p.build_prompt(EmbedInput(p.instructions[key], **kwargs)) == expected


def test_image_policies() -> None:
    vlm, gme = get_preset("vlm2vec-qwen2vl-2b"), get_preset("gme-qwen2vl-2b")
    assert (vlm.image.kind, vlm.image.size, vlm.image.max_tokens) == ("fixed", 1344, 1280)
    # 1344 px, then the processor's bound of 1280 tokens: 980 px, 1,225 tokens (not 2,304)
    assert vlm.image.processed_hw(256, 256) == (980, 980) and vlm.image_size == 980
    assert vlm.image.tokens(256, 256) == 1225 and vlm.base_dtype == "bf16"
    assert vlm.with_image_size(448).image.tokens(1, 1) == 256 and PRESETS["tiny"].image_size == 56
    assert (gme.image.kind, gme.image.min_tokens, gme.image.max_tokens) == ("smart", 256, 1280)
    assert gme.positions == "plain" and vlm.positions == "rope_index" and gme.max_length == 1800
    assert gme.cuda_dtype == "fp16" and vlm.cuda_dtype == "bf16"
    assert vlm.with_image_size(448).image.size == 448
    small = gme.with_image_size(448).image
    assert (small.min_tokens, small.max_tokens) == (256, 256)
    with pytest.raises(InputError, match="28..4096"):
        vlm.with_image_size(10)


def test_bbox_and_latlon_formats() -> None:
    p = PRESETS["tiny"]
    assert p.format_bbox((-5, 0.4, 56.2, 28), (56, 56)) == "<|box_start|>(0,7),(1000,500)<|box_end|>"
    with pytest.raises(InputError, match="inverted"):
        p.format_bbox((10, 10, 5, 20), (56, 56))
    with pytest.raises(InputError, match="out of range"):
        p.format_latlon(91.0, 0.0)
    assert p.format_latlon(12.34567, -45.6) == "latitude 12.3457, longitude -45.6000"


def test_encode_shapes_order_and_batch_independence(tiny_embedder) -> None:
    e = tiny_embedder
    ims = _images(5)
    inputs = [EmbedInput(e.preset.instructions["tile"], image=im) for im in ims]
    inputs += [EmbedInput(e.preset.instructions["text_query"], text="water " * (i + 1)) for i in range(4)]
    inputs.append(EmbedInput(e.preset.instructions["region_query"], image=ims[0], bbox=(4, 4, 30, 40)))
    v1 = e.encode(inputs, batch_size=1)
    v8 = e.encode(inputs, batch_size=8)
    assert v8.shape == (len(inputs), e.dim) and v8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v8, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v1, v8, atol=1e-4)
    # order preserved: each vector equals that input embedded alone
    alone = e.encode([inputs[6]], batch_size=1)[0]
    np.testing.assert_allclose(v8[6], alone, atol=1e-4)


def test_normalize_embeddings_false_returns_the_raw_pooled_vectors(tiny_embedder) -> None:
    e = tiny_embedder
    inputs = [EmbedInput(e.preset.instructions["tile"], image=_images(1)[0]),
              EmbedInput(e.preset.instructions["text_query"], text="a harbour with ships")]
    unit = e.encode(inputs, batch_size=2)
    raw = e.encode(inputs, batch_size=2, normalize_embeddings=False)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3), norms  # the last hidden state, not a unit vector
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)  # same direction


def test_same_image_same_vector_and_conditioning_changes_it(tiny_embedder) -> None:
    e = tiny_embedder
    im = _images(1, seed=3)[0]
    tile = EmbedInput(e.preset.instructions["tile"], image=im)
    a, b = e.encode([tile, tile])
    np.testing.assert_allclose(a, b, atol=1e-6)
    r1, r2, g1, g2 = e.encode([
        EmbedInput(e.preset.instructions["region_query"], image=im, bbox=(0, 0, 20, 20)),
        EmbedInput(e.preset.instructions["region_query"], image=im, bbox=(30, 30, 60, 60)),
        EmbedInput(e.preset.instructions["point_query"], image=im, latlon=(10.0, 20.0)),
        EmbedInput(e.preset.instructions["point_query"], image=im, latlon=(-33.0, 151.0)),
    ])
    assert float(r1 @ r2) < 0.99999 and float(g1 @ g2) < 0.99999


def test_save_and_reload_identical(tiny_embedder, tmp_path) -> None:
    e = tiny_embedder
    inputs = [EmbedInput(e.preset.instructions["tile"], image=_images(1)[0]), EmbedInput("", text="forest")]
    before = e.encode(inputs)
    out = e.save(tmp_path / "ckpt")
    assert (out / "geovec.json").exists() and (out / "config.json").exists()
    again = load_embedder(str(out), device="cpu")
    assert again.preset.name == "tiny" and again.dim == e.dim
    np.testing.assert_allclose(again.encode(inputs), before, atol=1e-5)


def test_bad_inputs_and_missing_models(tiny_embedder, tmp_path) -> None:
    with pytest.raises(InputError, match="empty input"):
        tiny_embedder.encode([EmbedInput("", text="   ")])
    with pytest.raises(NotFoundError, match="unknown model preset"):
        load_embedder("no-such-preset", device="cpu")
    with pytest.raises(NotFoundError, match="not a checkpoint or adapter folder"):
        load_embedder(str(tmp_path / "missing"), device="cpu")
    import torch

    if not torch.cuda.is_available():  # on a GPU machine this request is valid
        with pytest.raises(InputError, match="CUDA is not available"):
            load_embedder("tiny", device="cuda")
    with pytest.raises(InputError, match="unknown device"):
        load_embedder("tiny", device="tpu")


def test_prepare_is_thread_safe(tiny_embedder) -> None:
    import threading

    e = tiny_embedder
    inputs = [EmbedInput(e.preset.instructions["tile"], image=im) for im in _images(4)]
    ref = e.prepare(inputs)["input_ids"]
    results, errors = [], []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(e.prepare(inputs)["input_ids"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20
    assert all(bool((r == ref).all()) for r in results)


def test_offline_hub_model_fails_fast_with_one_line(tmp_path) -> None:
    """No network and nothing cached: a clear one-line error at once, not minutes of hub retries."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a loopback port nobody listens on stands in for an unreachable hub
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    (tmp_path / "r").mkdir()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "geovec.backend", "index", str(tmp_path / "r"), "--index",
                        str(tmp_path / "idx"), "--model", "vlm2vec-qwen2vl-2b"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0] and "geovec model tiny" in lines[0], r.stderr
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("size", [56, 1344])
def test_device_patches_equal_the_processors_pixels(tiny_model_dir, size: int) -> None:
    """Fixed-size presets patchify uint8 images on the device: exactly the processor's pixel values."""
    import torch

    from geovec.backend.model import pixels

    e = load_embedder(str(tiny_model_dir), device="cpu", image_size=size)
    assert e._device_patches
    ims = [e.image(im) for im in _images(3, size=40, seed=size)]
    ref = e.processor.image_processor(images=ims, return_tensors="pt")
    u8 = pixels.stack_u8(ims)
    assert pixels.grid_of(u8, e.processor.image_processor).tolist() == ref["image_grid_thw"].tolist()
    assert torch.equal(pixels.patchify(u8, e.processor.image_processor), ref["pixel_values"])
    batch = e.prepare([EmbedInput(e.instructions["tile"], image=im) for im in _images(2, seed=1)])
    full = e.processor(text=[e.preset.build_prompt(EmbedInput(e.instructions["tile"], image=ims[0]))] * 2,
                       images=[e.image(im) for im in _images(2, seed=1)], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == full["input_ids"].tolist()
    on_device = e._on_device(batch)
    assert torch.equal(on_device["pixel_values"], full["pixel_values"])


def test_too_old_transformers_is_a_clear_error(monkeypatch, tiny_model_dir) -> None:
    import transformers

    from geovec.backend.errors import ModelUnavailableError

    monkeypatch.setattr(transformers, "__version__", "4.51.3")
    with pytest.raises(ModelUnavailableError, match=r"transformers 4.51.3 is too old \(GeoVec needs >= 4.52\)"):
        load_embedder(str(tiny_model_dir), device="cpu")


def test_fast_tokenizer_gives_the_python_tokenizers_ids(tiny_model_dir) -> None:
    """The embedder tokenises with the Rust tokenizer; its ids equal the Python Qwen2Tokenizer's
    (digits of boxes and coordinates one by one), so the fast path changes no vector."""
    from transformers import AutoProcessor

    e = load_embedder(str(tiny_model_dir), device="cpu")
    assert e.processor.tokenizer.is_fast
    slow = AutoProcessor.from_pretrained(str(tiny_model_dir), use_fast=False).tokenizer
    assert not slow.is_fast
    prompts = [e.preset.build_prompt(inp) for inp in (
        EmbedInput(e.instructions["region_query"], image=np.zeros((8, 8, 3), np.uint8), bbox=(3, 17, 250, 999)),
        EmbedInput(e.instructions["point_query"], image=np.zeros((8, 8, 3), np.uint8), latlon=(12.34567, -45.6789)),
        EmbedInput(e.instructions["text_query"], text="  the 12 circular tanks,\n\nnext to pier 7 "))]
    for p in prompts:
        fast_ids = e.processor.tokenizer(p, add_special_tokens=False)["input_ids"]
        assert fast_ids == slow(p, add_special_tokens=False)["input_ids"], p
