"""Each preset feeds its checkpoint exactly as the checkpoint's authors' code does.

For each family, an independent re-implementation of the reference procedure
(VLM2Vec's MMEB evaluation of its Qwen2-VL checkpoints: full Qwen2-VL forward on
``<|image_pad|>\\n...\\n`` prompts with images resized to 1344 px and the LoRA merged;
GME's ``gme_inference.py``: chat layout, images rounded to multiples of 28 then 256..1280
tokens, image features scattered into the embeddings and the decoder run with its
default 1-D positions) runs on a tiny checkpoint in that family's layout, written with
large weights so that positions and resizing change the vectors. ``Embedder.encode``
must agree to 1e-5; each deviation the earlier code had is shown to break that.
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


def _vlm2vec_cases() -> list[tuple[str, np.ndarray | None]]:
    """(prompt, image) pairs written the way VLM2Vec's evaluation writes them."""
    return [
        ("<|image_pad|>\nRepresent the given image.\n", _image(64, 64, 0)),
        ("<|image_pad|>\nRepresent the region <|box_start|>(0,250),(500,1000)<|box_end|> of the given image.\n",
         _image(64, 64, 0)),
        ("<|image_pad|>\nRepresent the given image with the following question: Is there water?\n",
         _image(48, 80, 1)),
        ("Find me an overhead satellite image that matches the given caption: storage tanks\n", None),
        ("storage tanks", None),
    ]


def _our_inputs(instructions: dict[str, str]) -> list[EmbedInput]:
    im0, im1 = _image(64, 64, 0), _image(48, 80, 1)
    return [
        EmbedInput(instructions["tile"], image=im0),
        EmbedInput(instructions["region_query"], image=im0, bbox=(0, 16, 32, 64)),
        EmbedInput(instructions["vqa"], image=im1, text="Is there water?"),
        EmbedInput(instructions["text_query"], text="storage tanks"),
        EmbedInput(instructions["text_doc"], text="storage tanks"),
    ]


def _manual_lora_merge(model: torch.nn.Module, adapter: Path) -> None:
    """W += B @ A * alpha / r for every pair in the file, module paths moved to today's layout."""
    import json

    from safetensors.torch import load_file

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    state = load_file(str(adapter / "adapter_model.safetensors"))
    for key in [k for k in state if k.endswith(".lora_A.weight")]:
        path = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        if path.startswith("model.") and not path.startswith("model.language_model."):
            path = "model.language_model." + path.removeprefix("model.")
        b = state[key.replace(".lora_A.", ".lora_B.")]
        with torch.no_grad():
            model.get_submodule(path).weight += (b @ state[key]) * scale


def reference_vlm2vec(base: Path, adapter: Path | None, cases, *, size: int = 1344,
                      resample: int = Image.Resampling.BICUBIC, merge: bool = True) -> np.ndarray:
    """VLM2Vec's procedure, one input at a time: resize, processor, full forward, last token."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    proc = AutoProcessor.from_pretrained(base, use_fast=False)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()
    if adapter is not None and merge:
        _manual_lora_merge(model, adapter)
    out = []
    with torch.no_grad():
        for text, image in cases:
            images = None
            if image is not None:
                images = [Image.fromarray(image).resize((size, size), resample)]
                proc.image_processor.max_pixels = max(proc.image_processor.max_pixels, size * size)
                proc.image_processor.size = {"shortest_edge": proc.image_processor.min_pixels,
                                             "longest_edge": proc.image_processor.max_pixels}
            inputs = proc(text=[text], images=images, return_tensors="pt")
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
            out.append(torch.nn.functional.normalize(hidden[0, -1].float(), dim=-1).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def vlm2vec_ref(vlm2vec_ckpt) -> np.ndarray:
    base, adapter = vlm2vec_ckpt
    return reference_vlm2vec(base, adapter, _vlm2vec_cases())


def test_vlm2vec_matches_reference(vlm2vec_ckpt, vlm2vec_ref) -> None:
    base, adapter = vlm2vec_ckpt
    emb = load_embedder(str(adapter), device="cpu")
    assert emb.preset.name == "vlm2vec-qwen2vl-2b" and emb.preset.image.size == 1344
    ours = emb.encode(_our_inputs(emb.instructions), batch_size=8)
    assert np.abs(ours - vlm2vec_ref).max() <= TOL


@pytest.mark.parametrize("deviation", ["prompt without newlines", "448 px bilinear", "adapter not merged"])
def test_vlm2vec_reference_catches_each_old_deviation(vlm2vec_ckpt, vlm2vec_ref, deviation: str) -> None:
    """The parity test can fail: each way the earlier code fed the checkpoint moves the vectors."""
    base, adapter = vlm2vec_ckpt
    cases, ref = _vlm2vec_cases(), vlm2vec_ref
    if deviation == "prompt without newlines":
        old = [(t.replace("<|image_pad|>\n", "<|image_pad|> ").rstrip("\n"), im) for t, im in cases]
        other = reference_vlm2vec(base, adapter, old)
    elif deviation == "448 px bilinear":
        other = reference_vlm2vec(base, adapter, cases, size=448, resample=Image.Resampling.BILINEAR)
    else:
        other = reference_vlm2vec(base, adapter, cases, merge=False)
    assert np.abs(other - ref).max() > 100 * TOL


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
    emb = load_embedder(str(gme_ckpt), device="cpu")
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
