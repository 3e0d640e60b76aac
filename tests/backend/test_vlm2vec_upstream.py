"""The vlm2vec preset is fed as VLM2Vec's own MMEB evaluation feeds its Qwen2-VL checkpoints.

No registry package carries VLM2Vec's code for this Python (``vlm2vec-for-pyserini``,
a fork, needs Python >= 3.12, transformers 4.51.3 and flash-attn), so the expected
values below are read off its evaluation path step by step, at TIGER-AI-Lab/VLM2Vec
commit 6e1e1d42 (``data_prepare`` -> ``MultimodalEvalDataCollator`` ->
``Qwen2_VL_process_fn`` -> ``MMEBModel``), each constant with its file and line. The
fixture is a small random Qwen2-VL in the published checkpoint's layout (bf16
weights, Qwen2-VL-2B-Instruct's ``preprocessor_config.json`` keys and pixel limits)
with a random LoRA in VLM2Vec's saved layout (module paths of transformers < 4.52).
GeoVec's own processor path (``Embedder.prepare``) must give the table's token ids,
``image_grid_thw`` and pixel shapes, and ``Embedder.encode`` the vectors of a forward
built the way upstream builds it (images resized to 1344 px, processor bound
28*28*4..28*28*1280, base weights in bf16, the adapter attached unmerged).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geovec.backend.binding import bind, check_identity
from geovec.backend.errors import ModelMismatchError
from geovec.backend.model.embedder import load_embedder
from geovec.backend.model.tiny import QWEN2VL_PREPROCESSOR, write_tiny_adapter, write_tiny_model
from geovec.backend.types import EmbedInput

TOL = 1e-5
SHARP = 0.3  # weight scale at which attention is far from uniform

# -- upstream's constants, each where it is read -----------------------------------------------------------
#: ``--image_resolution high`` (experiments/public/eval/eval_vlm2vecv1_8gpu.sh:58) ->
#: RESOLUTION_MAPPING["high"] (src/data/eval_dataset/base_eval_dataset.py:38-42), applied with
#: ``image.resize(image_resolution)`` because of ``--resize_use_processor false`` (eval_vlm2vecv1_8gpu.sh:57,
#: src/data/collator/eval_collator.py:162-163): PIL's default filter, bicubic, in the image's own mode.
HIGH = 1344
#: resize_min_pixels / resize_max_pixels defaults (src/arguments.py:45-46), handed to the image processor as
#: ``size={"shortest_edge": min, "longest_edge": max}`` (src/model/processor.py:125-129).
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 1280
#: The processor's smart resize of 1344 x 1344 (factor 14 * 2 = 28): 1344^2 = 1,806,336 > 1,003,520, so
#: beta = sqrt(1806336 / 1003520) = 1.3416 and each edge is floor(1344 / 1.3416 / 28) * 28 = 35 * 28 = 980.
EDGE = 980
GRID = [1, EDGE // 14, EDGE // 14]  # one frame, 70 x 70 patches of 14 px
TOKENS = (EDGE // 28) ** 2  # 2 x 2 patches merged per token: 1,225 (the old preset fed 96 x 96 / 4 = 2,304)
PIXELS_SHAPE = (GRID[1] * GRID[2], 3 * 2 * 14 * 14)  # patches x (channels * temporal patch 2 * 14 * 14)

LATLON = (29.69, -82.03)
BOX_PX = (0, 64, 128, 256)  # on a 256 px tile: (0,250),(500,1000) in Qwen2-VL's 0..1000 grounding integers


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


#: Input type -> (upstream's prompt text, where its code writes it, has an image).
UPSTREAM_TEXTS: dict[str, tuple[str, str, bool]] = {
    # image candidate: tgt_inst "<|image_1|>\nRepresent the given image." -> "" + process_input_text(add_image_token)
    # -> "<|image_pad|> \n..." -> replace(" \n", "\n") + "\n"
    "tile": ("<|image_pad|>\nRepresent the given image.\n",
             "image_t2i_eval.py:35-37, processor.py:650-673", True),
    # text query: qry_inst + ' ' + qry_text + '\n'
    "text query": ("Find me an overhead satellite image that matches the given caption: storage tanks\n",
                   "image_t2i_eval.py:19", False),
    # text candidate: the bare target text
    "text candidate": ("storage tanks", "image_i2t_eval.py:26", False),
    # image + box: the grounding query form, "\n" + instruction, image token, " \n" -> "\n", + "\n"; the region
    # in Qwen2-VL's grounding tokens (VLM2Vec has no box syntax of its own)
    "image + box": ("<|image_pad|>\nRepresent the region <|box_start|>(0,250),(500,1000)<|box_end|> of the given "
                    "image.\n", "image_i2i_vg_dataset.py:17-20", True),
    # image + lat/lon: the image query form with the location in the instruction line
    "image + lat/lon": ("<|image_pad|>\nRepresent the given image taken at latitude 29.6900, longitude -82.0300.\n",
                        "image_i2t_eval.py:17-20", True),
}


def _geovec_input(kind: str, ins: dict[str, str], image: np.ndarray) -> EmbedInput:
    return {
        "tile": EmbedInput(ins["tile"], image=image),
        "text query": EmbedInput(ins["text_query"], text="storage tanks"),
        "text candidate": EmbedInput(ins["text_doc"], text="storage tanks"),
        "image + box": EmbedInput(ins["region_query"], image=image, bbox=BOX_PX),
        "image + lat/lon": EmbedInput(ins["point_query"], image=image, latlon=LATLON),
    }[kind]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vlm2vec-real-layout")
    base = write_tiny_model(root / "base", seed=11, initializer_range=SHARP, preset="vlm2vec-qwen2vl-2b",
                            real_layout=True)
    adapter = write_tiny_adapter(root / "adapter", base, seed=12, legacy_layout=True)
    return base, adapter


@pytest.fixture(scope="module")
def emb(ckpt):
    return load_embedder(str(ckpt[1]), device="cpu", dtype="fp32")


def test_fixture_is_in_the_published_layout(ckpt) -> None:
    base, adapter = ckpt
    assert json.loads((base / "preprocessor_config.json").read_text()) == QWEN2VL_PREPROCESSOR
    from safetensors import safe_open
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(base / "model.safetensors")).values()} == {torch.bfloat16}
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and all(n.startswith("base_model.model.model.layers.") for n in names)  # transformers < 4.52


# ---------------------------------------------------------------- the expected-value table


def _upstream_processor(base: Path, max_pixels: int = MAX_PIXELS):
    """load_processor for QWEN2_VL (processor.py:121-134): the image processor with ``size=`` the bounds.

    VLM2Vec's vendored image processor keeps ``size`` over the checkpoint's ``min_pixels`` /
    ``max_pixels`` (src/model/vlm_backbone/qwen2_vl/image_processing_qwen2_vl.py:154-162, its ``from_dict``
    at 178-209); transformers' own class lets the config's values override ``size``, so they are set after.
    """
    from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}
    ip = Qwen2VLImageProcessor.from_pretrained(str(base), size=size)
    ip.size, ip.min_pixels, ip.max_pixels = size, MIN_PIXELS, max_pixels
    tok = AutoTokenizer.from_pretrained(str(base))
    return Qwen2VLProcessor.from_pretrained(str(base), image_processor=ip, tokenizer=tok)


def _upstream_image(image: np.ndarray | Image.Image) -> Image.Image:
    """eval_collator.py:162-163: ``image.resize((1344, 1344))`` on the image as opened (no RGB conversion)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return pil.resize((HIGH, HIGH))


@pytest.mark.parametrize("kind", list(UPSTREAM_TEXTS))
def test_prepared_inputs_match_the_table(ckpt, emb, kind: str) -> None:
    base, _ = ckpt
    text, _where, has_image = UPSTREAM_TEXTS[kind]
    img = _image(256, 256, 3)
    batch = emb.prepare([_geovec_input(kind, emb.instructions, img)])
    tok = _upstream_processor(base).tokenizer
    expected = tok(text.replace("<|image_pad|>", "<|image_pad|>" * TOKENS))["input_ids"]
    assert batch["input_ids"][0].tolist() == expected
    if not has_image:
        assert "image_grid_thw" not in batch
        return
    assert batch["image_grid_thw"].tolist() == [GRID]
    assert int((batch["input_ids"] == emb.image_token_id).sum()) == TOKENS <= 1280
    pixels = emb._on_device(batch)["pixel_values"]
    assert tuple(pixels.shape) == PIXELS_SHAPE
    # and the values are those of upstream's processor on upstream's 1344 px image
    theirs = _upstream_processor(base)(text=[text], images=[_upstream_image(img)], return_tensors="pt")
    assert theirs["image_grid_thw"].tolist() == [GRID] and theirs["input_ids"][0].tolist() == expected
    assert torch.equal(pixels, theirs["pixel_values"])


def test_a_1344_px_tile_is_at_most_1280_image_tokens(emb) -> None:
    assert emb.tokens_per_image(HIGH, HIGH) == TOKENS
    batch = emb.prepare([EmbedInput(emb.instructions["tile"], image=_image(HIGH, HIGH, 4))])
    assert batch["image_grid_thw"].tolist() == [GRID]


@pytest.mark.parametrize("mode", ["P", "RGBA", "L"])
def test_rgb_conversion_follows_the_resize_as_upstream(ckpt, emb, mode: str) -> None:
    """Upstream resizes the image as opened and converts to RGB in the processor (alpha over white)."""
    base, _ = ckpt
    rgb = Image.fromarray(_image(96, 96, 5))
    pil = {"P": rgb.quantize(16), "RGBA": rgb.convert("RGBA"), "L": rgb.convert("L")}[mode]
    if mode == "RGBA":
        alpha = Image.fromarray(_image(96, 96, 6)[..., 0])
        pil.putalpha(alpha)
    ours = emb._on_device(emb.prepare([EmbedInput(emb.instructions["tile"], image=pil)]))["pixel_values"]
    theirs = _upstream_processor(base)(text=[UPSTREAM_TEXTS["tile"][0]], images=[_upstream_image(pil)],
                                       return_tensors="pt")["pixel_values"]
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------- the vectors


def _attach_unmerged(model: torch.nn.Module, adapter: Path) -> torch.nn.Module:
    """The published path: the adapter attached, not merged. Its saved module paths (transformers < 4.52)
    are moved by transformers' own Qwen2-VL checkpoint conversion mapping."""
    import re

    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import Qwen2VLForConditionalGeneration

    mapping = Qwen2VLForConditionalGeneration._checkpoint_conversion_mapping

    def move(key: str) -> str:
        body = key.removeprefix("base_model.model.")
        for pattern, repl in mapping.items():
            body, n = re.subn(pattern, repl, body)
            if n:
                break
        return "base_model.model." + body

    peft_model = get_peft_model(model, LoraConfig.from_pretrained(str(adapter)))
    state = {move(k): v for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()}
    result = set_peft_model_state_dict(peft_model, state)
    assert not result.unexpected_keys
    return peft_model.eval()


def reference(base: Path, adapter: Path | None, cases: list[tuple[str, np.ndarray | None]], *,
              high: int | None = HIGH, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Upstream's procedure, one input at a time (Qwen2_VL_process_fn, processor.py:302-333): the image
    resized to 1344 (eval_collator.py:162-163), the processor with the bounds (processor.py:125-129), the
    base in bf16 (model.py:227-232) upcast to fp32 to compare, the adapter unmerged, the last token
    (``--pooling eos``), L2-normalised (``--normalize true``)."""
    from transformers import Qwen2VLForConditionalGeneration

    proc = _upstream_processor(base, max_pixels)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base), torch_dtype=torch.bfloat16).float().eval()
    if adapter is not None:
        model = _attach_unmerged(model, adapter)
    out = []
    with torch.no_grad():
        for text, image in cases:
            images = None
            if image is not None:
                images = [_upstream_image(image) if high else Image.fromarray(image)]
            inputs = proc(text=[text], images=images, return_tensors="pt")
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
            out.append(torch.nn.functional.normalize(hidden[0, -1].float(), dim=-1).numpy())
    return np.stack(out)


def _cases() -> list[tuple[str, np.ndarray | None]]:
    img = _image(256, 256, 3)
    return [(text, img if has_image else None) for text, _, has_image in UPSTREAM_TEXTS.values()]


@pytest.fixture(scope="module")
def ref(ckpt) -> np.ndarray:
    return reference(*ckpt, _cases())


def test_vectors_match_the_upstream_forward(emb, ref) -> None:
    img = _image(256, 256, 3)
    ours = emb.encode([_geovec_input(k, emb.instructions, img) for k in UPSTREAM_TEXTS], batch_size=8)
    assert np.abs(ours - ref).max() <= TOL


@pytest.mark.parametrize("deviation", ["2,304 tokens (bounds widened)", "no 1344 px step", "no adapter"])
def test_the_reference_catches_each_deviation(ckpt, ref, deviation: str) -> None:
    """Each way of feeding the checkpoint otherwise moves the image vectors far past the tolerance."""
    base, adapter = ckpt
    images = [c for c in _cases() if c[1] is not None]
    want = ref[[i for i, (_, im) in enumerate(_cases()) if im is not None]]
    if deviation.startswith("2,304"):
        other = reference(base, adapter, images, max_pixels=HIGH * HIGH)
    elif deviation.startswith("no 1344"):  # straight to the processor: 256 px -> 980 in one resize
        other = reference(base, adapter, [(t, np.asarray(Image.fromarray(im).resize((EDGE, EDGE))))
                                          for t, im in images], high=None)
    else:
        other = reference(base, None, images)
    assert np.abs(other - want).max() > 100 * TOL


def test_region_prompts_equal_independent_upstream_forwards(ckpt, emb) -> None:
    base, adapter = ckpt
    img = _image(256, 256, 7)
    boxes = [(0, 64, 128, 256), (32, 32, 96, 200), (128, 0, 256, 128)]
    ours = emb.encode_regions(img, boxes)

    def q(v: float) -> int:
        return round(v / 256 * 1000)

    texts = [f"<|image_pad|>\nRepresent the region <|box_start|>({q(x1)},{q(y1)}),({q(x2)},{q(y2)})<|box_end|> "
             "of the given image.\n" for x1, y1, x2, y2 in boxes]
    assert np.abs(ours - reference(base, adapter, [(t, img) for t in texts])).max() <= TOL


def test_base_weights_are_rounded_to_bf16_before_the_adapter(tmp_path) -> None:
    """model.py:229 loads the base in bf16 whatever the run dtype; an fp32-stored base is rounded too."""
    from safetensors.torch import load_file

    base = write_tiny_model(tmp_path / "fp32", seed=13, preset="vlm2vec-qwen2vl-2b")
    adapter = write_tiny_adapter(tmp_path / "adapter", base, seed=14)
    stored = next(v for k, v in load_file(str(base / "model.safetensors")).items()
                  if k.endswith("visual.patch_embed.proj.weight"))
    assert stored.dtype == torch.float32 and not torch.equal(stored, stored.bfloat16().float())
    loaded = load_embedder(str(adapter), device="cpu", dtype="fp32")
    w = loaded.model.model.visual.patch_embed.proj.weight
    assert w.dtype == torch.float32 and torch.equal(w, stored.bfloat16().float())


# ---------------------------------------------------------------- indexes of the old policy


OLD_POLICY = {"kind": "fixed", "size": 1344, "min_tokens": 4, "max_tokens": 16384}


def test_an_index_of_the_old_image_policy_is_refused(emb) -> None:
    recorded = {**emb.identity, "image": OLD_POLICY}
    with pytest.raises(ModelMismatchError) as err:
        check_identity(recorded, emb.identity, index="/data/idx")
    msg = str(err.value)
    assert "\n" not in msg and "re-index" in msg and "2304 tokens" in msg and "1225 tokens" in msg
    meta = {"dim": emb.dim, "model": recorded}
    with pytest.raises(ModelMismatchError, match="re-index"):
        bind(emb, meta, index="/data/idx")
    # forced: searched as built, at the index's own policy
    assert bind(emb, meta, index="/data/idx", force=True).tokens_per_image(HIGH, HIGH) == 2304


def test_indexes_whose_pixels_did_not_change_still_open(emb) -> None:
    """--image-size 448 fed 448 px before and after (256 tokens <= 1280): such an index still opens."""
    old448 = {**OLD_POLICY, "size": 448}
    bound = bind(emb, {"dim": emb.dim, "model": {**emb.identity, "image": old448}}, index="/data/idx")
    assert bound.tokens_per_image(448, 448) == 256
    check_identity({**emb.identity}, emb.identity, index="/data/idx")


def test_cli_search_of_an_old_policy_index_says_to_reindex(ckpt, emb, tmp_path) -> None:
    """A real index whose sidecar records the old policy: `geovec search` fails with one line, nothing lost."""
    import os
    import subprocess
    import sys

    from geovec.backend.demo import write_sample_folder
    from geovec.backend.indexing import index_folder
    from geovec.backend.types import TilingParams

    folder = write_sample_folder(tmp_path / "rasters", size=64)
    idx = tmp_path / "idx"
    n = index_folder(folder, idx, emb, params=TilingParams(tile_size=64)).tiles
    sidecar = idx / "index.json"
    meta = json.loads(sidecar.read_text())
    meta["model"]["image"] = OLD_POLICY  # as the preset recorded it before
    sidecar.write_text(json.dumps(meta))
    env = {**os.environ, "GEOVEC_TOKEN_FILE": str(tmp_path / "no-server.json"), "GEOVEC_CPU_DTYPE": "fp32"}
    r = subprocess.run([sys.executable, "-m", "geovec.backend", "search", "--index", str(idx), "--model", str(ckpt[1]),
                        "--text", "water", "--k", "2"], capture_output=True, text=True, timeout=600, env=env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and "re-index" in lines[0] and "2304 tokens" in lines[0], r.stderr
    assert json.loads(sidecar.read_text())["count"] == meta["count"] == n
