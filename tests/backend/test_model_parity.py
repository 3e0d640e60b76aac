"""The GME preset feeds its checkpoint exactly as GME's code does; LoRA adapters load strictly.

GME's ``gme_inference.py`` (chat layout, images rounded to multiples of 28 then 256..1280
tokens, image features scattered into the embeddings and the decoder run with its
default 1-D positions) is re-implemented on a tiny checkpoint in GME's layout, written
with large weights so that positions and resizing change the vectors; ``Embedder.encode``
must agree to 1e-5, and GeoVec's processor path must give the ids and grids that
procedure gives. The VLM2Vec preset's parity with its authors' evaluation path is in
``test_vlm2vec_upstream.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geovec.backend.errors import ModelUnavailableError
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.tiny import write_tiny_adapter, write_tiny_model
from geovec.backend.types import EmbedInput

TOL = 1e-5
SHARP = 0.3  # weight scale at which attention is far from uniform


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- VLM2Vec


@pytest.fixture(scope="module")
def vlm2vec_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vlm2vec")
    base = write_tiny_model(root / "base", seed=1, initializer_range=SHARP, preset="vlm2vec-qwen2vl-2b")
    adapter = write_tiny_adapter(root / "adapter", base, seed=2, legacy_layout=True)
    return base, adapter


def test_adapter_with_a_missing_key_is_an_error(vlm2vec_ckpt, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    base, adapter = vlm2vec_ckpt
    broken = tmp_path / "adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    state = load_file(str(adapter / "adapter_model.safetensors"))
    dropped = sorted(state)[3]
    save_file({k: v for k, v in state.items() if k != dropped}, str(broken / "adapter_model.safetensors"))
    with pytest.raises(ModelUnavailableError, match="missing from the file"):
        load_embedder(str(broken), device="cpu")
    state["base_model.model.model.layers.0.self_attn.nope.lora_A.weight"] = state[dropped].clone()
    save_file(state, str(broken / "adapter_model.safetensors"))
    with pytest.raises(ModelUnavailableError, match="match no module"):
        load_embedder(str(broken), device="cpu")


def test_training_checkpoint_of_the_preset_layout_saves_and_reloads_merged(vlm2vec_ckpt, tmp_path) -> None:
    base, adapter = vlm2vec_ckpt
    emb = load_embedder(str(adapter), device="cpu", image_size=56)
    x = [EmbedInput(emb.instructions["tile"], image=_image(40, 40, 5)), EmbedInput("", text="forest")]
    out = emb.save(tmp_path / "merged", instructions={"text_query": "Find a field of:"})
    again = load_embedder(str(out), device="cpu", image_size=56)
    assert again.preset.name == "vlm2vec-qwen2vl-2b" and again.instructions["text_query"] == "Find a field of:"
    assert not (out / "adapter_config.json").exists()
    assert np.abs(again.encode(x) - emb.encode(x)).max() <= TOL


# ---------------------------------------------------------------- GME


@pytest.fixture(scope="module")
def gme_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("gme") / "m", seed=3, initializer_range=SHARP,
                            preset="gme-qwen2vl-2b")


def _fetch_image(image: np.ndarray) -> Image.Image:
    """gme_inference.fetch_image: multiples of 28 within 4..16384 tokens, PIL's default resampling."""
    h, w = image.shape[:2]
    f, lo, hi = 28, 4 * 28 * 28, 16384 * 28 * 28
    hb, wb = max(f, round(h / f) * f), max(f, round(w / f) * f)
    if hb * wb > hi:
        beta = math.sqrt(h * w / hi)
        hb, wb = math.floor(h / beta / f) * f, math.floor(w / beta / f) * f
    elif hb * wb < lo:
        beta = math.sqrt(lo / (h * w))
        hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
    return Image.fromarray(image).convert("RGB").resize((wb, hb))


def reference_gme(ckpt: Path, items, *, rope_positions: bool = False, fixed448: bool = False) -> np.ndarray:
    """gme_inference.GmeQwen2VL.embed + forward, one batch, right padding."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    proc = AutoProcessor.from_pretrained(ckpt, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28, use_fast=False)
    proc.tokenizer.padding_side = "right"
    base = Qwen2VLForConditionalGeneration.from_pretrained(ckpt).eval()
    texts, images = [], []
    for instruction, text, image in items:
        s = ""
        if image is not None:
            s += "<|vision_start|><|image_pad|><|vision_end|>"
            images.append(Image.fromarray(image).resize((448, 448), Image.Resampling.BILINEAR) if fixed448
                          else _fetch_image(image))
        s += text or ""
        texts.append(f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{s}<|im_end|>\n"
                     "<|im_start|>assistant\n<|endoftext|>")
    inputs = proc(text=texts, images=images or None, padding=True, truncation=True, max_length=1800,
                  return_tensors="pt")
    with torch.no_grad():
        if rope_positions:  # what a plain Qwen2VLModel forward does: the multimodal rope index
            hidden = base.model(**inputs).last_hidden_state
        else:
            embeds = base.model.language_model.embed_tokens(inputs["input_ids"])
            if "pixel_values" in inputs:
                feats = base.model.visual(inputs["pixel_values"].type(base.model.visual.dtype),
                                          grid_thw=inputs["image_grid_thw"])
                embeds[inputs["input_ids"] == base.config.image_token_id] = feats
            hidden = base.model.language_model(input_ids=None, attention_mask=inputs["attention_mask"],
                                               inputs_embeds=embeds).last_hidden_state
    last = inputs["attention_mask"].sum(dim=1) - 1
    pooled = hidden[torch.arange(hidden.shape[0]), last]
    return torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()


def _gme_items():
    im0, im1 = _image(64, 64, 0), _image(60, 100, 1)
    return [
        ("You are a helpful assistant.", None, im0),
        ("Represent the marked region of the given satellite image.",
         "<|box_start|>(0,250),(500,1000)<|box_end|>", im0),
        ("You are a helpful assistant.", None, im1),
        ("Find an overhead satellite image that matches the given text.", "storage tanks", None),
        ("You are a helpful assistant.", "storage tanks", None),
    ]


def _gme_inputs(ins: dict[str, str]) -> list[EmbedInput]:
    im0, im1 = _image(64, 64, 0), _image(60, 100, 1)
    return [EmbedInput(ins["tile"], image=im0), EmbedInput(ins["region_query"], image=im0, bbox=(0, 16, 32, 64)),
            EmbedInput(ins["tile"], image=im1), EmbedInput(ins["text_query"], text="storage tanks"),
            EmbedInput(ins["text_doc"], text="storage tanks")]


def test_gme_matches_reference(gme_ckpt) -> None:
    emb = load_embedder(str(gme_ckpt), device="cpu", dtype="fp32")
    assert emb.preset.name == "gme-qwen2vl-2b" and emb.preset.positions == "plain"
    ours = emb.encode(_gme_inputs(emb.instructions), batch_size=8)
    ref = reference_gme(gme_ckpt, _gme_items())
    assert np.abs(ours - ref).max() <= TOL
    # the non-square image keeps its aspect: 60x100 -> 56x112 -> 336x644 (276 tokens, within 256..1280)
    batch = emb.prepare([EmbedInput(emb.instructions["tile"], image=_image(60, 100, 1))])
    assert batch["image_grid_thw"].tolist() == [[1, 24, 46]]


@pytest.mark.parametrize("deviation", ["multimodal rope positions", "448 px bilinear"])
def test_gme_reference_catches_each_old_deviation(gme_ckpt, deviation: str) -> None:
    ref = reference_gme(gme_ckpt, _gme_items())
    other = reference_gme(gme_ckpt, _gme_items(), rope_positions=deviation.startswith("multimodal"),
                          fixed448=deviation.startswith("448"))
    assert np.abs(other - ref).max() > 100 * TOL


#: GmeQwen2VL.embed as VLM2Vec vendors it (src/model/baseline_backbone/gme/gme_inference.py at 6e1e1d42):
#: '<|vision_start|><|image_pad|><|vision_end|>' then the text (:122-130) in the chat string (:131), the
#: corpus side with 'You are a helpful assistant.' (:54, :120-121); each image through fetch_image (:280-317:
#: multiples of 28 within 4..16384 tokens), then the processor within min_image_tokens=256 ..
#: max_image_tokens=1280 times 28*28 (:23-24, :49-50). Grids worked by hand:
#: 64x64 -> 56x56; 56*56 = 3,136 < 200,704, beta = sqrt(200704 / 3136) = 8 -> 448x448: [1, 32, 32], 256 tokens.
#: 60x100 -> 56x112; beta = sqrt(200704 / 6272) = 5.657 -> ceil(11.3) * 28 = 336, ceil(22.6) * 28 = 644:
#: [1, 24, 46], 276 tokens.
GME_TABLE: dict[str, tuple[str, str, tuple[int, int] | None, list[int] | None]] = {
    "tile": ("You are a helpful assistant.", "", (64, 64), [1, 32, 32]),
    "tile 60x100": ("You are a helpful assistant.", "", (60, 100), [1, 24, 46]),
    "image + box": ("Represent the marked region of the given satellite image.",
                    "<|box_start|>(0,250),(500,1000)<|box_end|>", (64, 64), [1, 32, 32]),
    "text query": ("Find an overhead satellite image that matches the given text.", "storage tanks", None, None),
    "text candidate": ("You are a helpful assistant.", "storage tanks", None, None),
}


@pytest.mark.parametrize("kind", list(GME_TABLE))
def test_gme_prepared_inputs_match_the_table(gme_ckpt, kind: str) -> None:
    from transformers import AutoTokenizer

    emb = load_embedder(str(gme_ckpt), device="cpu", dtype="fp32")
    system, text, hw, grid = GME_TABLE[kind]
    ins = emb.instructions
    image = _image(*hw, 0) if hw else None
    inp = {"tile": EmbedInput(ins["tile"], image=image), "tile 60x100": EmbedInput(ins["tile"], image=image),
           "image + box": EmbedInput(ins["region_query"], image=image, bbox=(0, 16, 32, 64)),
           "text query": EmbedInput(ins["text_query"], text="storage tanks"),
           "text candidate": EmbedInput(ins["text_doc"], text="storage tanks")}[kind]
    vision = "<|vision_start|><|image_pad|><|vision_end|>" if hw else ""
    msg = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{vision}{text}<|im_end|>\n"
           "<|im_start|>assistant\n<|endoftext|>")
    n = grid[1] * grid[2] // 4 if grid else 0
    expected = AutoTokenizer.from_pretrained(str(gme_ckpt))(msg.replace("<|image_pad|>", "<|image_pad|>" * n))
    batch = emb.prepare([inp])
    assert batch["input_ids"][0].tolist() == expected["input_ids"]
    if grid is None:
        assert "image_grid_thw" not in batch
        return
    assert batch["image_grid_thw"].tolist() == [grid]
    assert tuple(emb._on_device(batch)["pixel_values"].shape) == (grid[1] * grid[2], 3 * 2 * 14 * 14)
