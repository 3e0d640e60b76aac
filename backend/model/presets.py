"""Checkpoint-family conventions: prompt strings, image size, positions, pooling, dtype.

Each preset feeds its checkpoint the way the checkpoint's authors do (their
public inference and evaluation code), byte for byte:

* ``vlm2vec-qwen2vl-2b`` — VLM2Vec as its MMEB evaluation runs its Qwen2-VL
  checkpoints (TIGER-AI-Lab/VLM2Vec at commit 6e1e1d42; ``file:line`` below), no chat
  template:

  - prompts: an image input is ``"<|image_pad|>\\n{instruction}[ {text}]\\n"``
    (``src/data/eval_dataset/image_i2t_eval.py:17-20`` and ``image_t2i_eval.py:35-37``
    through ``process_input_text``, ``src/model/processor.py:650-673``), a text query
    ``"{instruction} {text}\\n"`` (``image_t2i_eval.py:19``), a text candidate the
    bare text (``image_i2t_eval.py:26``). The bare image placeholder (no vision-start
    token) makes Qwen2-VL's rope index see no image, so every token gets 1-D positions.
  - images, two resizes: the evaluation script passes ``--resize_use_processor false
    --image_resolution high`` (``experiments/public/eval/eval_vlm2vecv1_8gpu.sh:57-58``),
    so the collator first resizes every image, in the mode it was opened in, to
    ``RESOLUTION_MAPPING["high"]`` = 1344 x 1344 with PIL's default (bicubic) filter
    (``src/data/collator/eval_collator.py:162-163``,
    ``src/data/eval_dataset/base_eval_dataset.py:38-42``); then the Qwen2-VL image
    processor converts it to RGB and resizes it again within
    ``size={"shortest_edge": resize_min_pixels, "longest_edge": resize_max_pixels}``
    (``src/model/processor.py:125-129``), defaults 28*28*4 and 28*28*1280
    (``src/arguments.py:45-46``): 1344 x 1344 becomes 980 x 980, 70 x 70 patches,
    **1,225 image tokens**. The checkpoint's own ``max_pixels`` is not used. Today's V1
    training script passes the same flags (``experiments/public/train/train_v1-qwen2vl-2B.sh:28``
    at e478b1f; ``train.py:84``); the code of February 2025 that trained the checkpoint
    (ba1e02b: ``src/dataset.py:16-20``, ``src/model_utils.py:67``) kept the checkpoint's bound,
    2,304 tokens. Where they differ this preset follows the evaluation.
  - weights: the base is loaded in bf16 (``src/model/model.py:227-232``) and, with
    ``--lora``, the adapter merged into it (``model.py:268-274``). GeoVec merges the
    LoRA at load: on bf16 runs into the bf16 base, as there; on fp32 runs the bf16
    base is upcast (exact) and the LoRA merged in fp32, which equals the published
    path's unmerged adapter to ~1e-6 in fp32 (bf16 rounding alone moves a vector more).

* ``gme-qwen2vl-2b`` — GME (``gme_inference.py``): the Qwen2 chat layout
  ``<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{vision}{text}<|im_end|>\\n``
  ``<|im_start|>assistant\\n<|endoftext|>``, the corpus side with
  ``You are a helpful assistant.``; images rounded to multiples of 28 then resized
  by the processor to 256..1280 image tokens; plain 1-D positions after the image
  embeddings are merged; fp16 on CUDA; at most 1800 tokens.
* ``tiny`` — the local random model, in the VLM2Vec layout at 56 px.

Every preset pools the last real token and L2-normalises it. Boxes are Qwen2-VL
grounding tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with integers
normalised to 0..1000 of the image, so they do not depend on the resize. The box
and lat/lon text always follow the image (VLM2Vec: inside the instruction line;
GME: in the user turn), so K region prompts on one image share their prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..errors import InputError, NotFoundError
from ..types import Box, EmbedInput

QWEN2VL_IMAGE = "<|image_pad|>"
QWEN2VL_VISION = "<|vision_start|><|image_pad|><|vision_end|>"
GME_DEFAULT_INSTRUCTION = "You are a helpful assistant."

#: Task keys every preset defines (``geovec.json`` of a saved model may override the texts).
TASKS = ("tile", "image_query", "text_query", "text_doc", "region_query", "point_query", "referring_query",
         "vqa", "classification")

#: VLM2Vec-layout instructions: ``{bbox}``, ``{latlon}`` and ``{question}`` are filled in place.
RS_INSTRUCTIONS: dict[str, str] = {
    "tile": "Represent the given image.",
    "image_query": "Represent the given image.",
    "text_query": "Find me an overhead satellite image that matches the given caption:",
    "text_doc": "",
    "region_query": "Represent the region {bbox} of the given image.",
    "point_query": "Represent the given image taken at {latlon}.",
    "referring_query": "Find the region of an overhead satellite image described by:",
    "vqa": "Represent the given image with the following question: {question}",
    "classification": "Represent the given image for classification",
}

#: GME-layout system instructions (the box, lat/lon and question go to the user turn).
GME_INSTRUCTIONS: dict[str, str] = {
    "tile": GME_DEFAULT_INSTRUCTION,
    "image_query": GME_DEFAULT_INSTRUCTION,
    "text_query": "Find an overhead satellite image that matches the given text.",
    "text_doc": GME_DEFAULT_INSTRUCTION,
    "region_query": "Represent the marked region of the given satellite image.",
    "point_query": "Represent the given satellite image taken at the given location.",
    "referring_query": "Find the region of a satellite image described by the given text.",
    "vqa": "Represent the given satellite image with the following question. {question}",
    "classification": "Classify the given satellite image.",
}

_PLACEHOLDERS = ("{bbox}", "{latlon}", "{question}")


#: Qwen2-VL's resize factor: patch size 14 x merge size 2.
FACTOR = 28


@dataclass(frozen=True)
class ImagePolicy:
    """How an image is sized before the model sees it.

    ``fixed``: resized to ``size`` x ``size`` (PIL bicubic, in the image's own mode), then
    by the processor's smart resize to at most ``max_tokens`` image tokens (VLM2Vec's
    evaluation: 1344 px, then <= 1280 tokens = 980 px). A fixed size is never enlarged
    to reach ``min_tokens``: ``--image-size`` below 56 px stays as asked.
    ``smart``: first rounded to multiples of 28 (PIL bicubic), then the processor's
    smart resize keeps the aspect within ``min_tokens``..``max_tokens`` image tokens (GME).
    """

    kind: Literal["fixed", "smart"]
    size: int | None = None
    min_tokens: int = 4
    max_tokens: int = 16384

    def processed_hw(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) in pixels the model sees for an ``height`` x ``width`` input."""
        if self.kind == "fixed":
            assert self.size is not None
            side = int(self.size)
            lo = min(self.min_tokens * FACTOR * FACTOR, max(FACTOR, round(side / FACTOR) * FACTOR) ** 2)
            return smart_resize(side, side, FACTOR, lo, self.max_tokens * FACTOR * FACTOR)
        h, w = smart_resize(height, width, FACTOR, 4 * FACTOR * FACTOR, 16384 * FACTOR * FACTOR)
        return smart_resize(h, w, FACTOR, self.min_tokens * FACTOR * FACTOR, self.max_tokens * FACTOR * FACTOR)

    def tokens(self, height: int, width: int) -> int:
        """Image tokens an ``height`` x ``width`` input becomes (merged 2 x 2 patches)."""
        h, w = self.processed_hw(height, width)
        return (h // FACTOR) * (w // FACTOR)

    def describe(self) -> str:
        if self.kind == "fixed":
            h, w = self.processed_hw(0, 0)
            seen = "" if (h, w) == (self.size, self.size) else f" -> {w}x{h}"
            return f"{self.size}x{self.size}{seen} ({self.tokens(0, 0)} tokens)"
        return f"{self.min_tokens}..{self.max_tokens} tokens"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "min_tokens": self.min_tokens, "max_tokens": self.max_tokens}

    def with_size(self, size: int | None) -> ImagePolicy:
        """This policy at another edge size (None keeps the preset's): the ``--image-size`` knob."""
        if size is None:
            return self
        if isinstance(size, bool) or not isinstance(size, int) or not 28 <= size <= 4096:
            raise InputError(f"image size {size!r} is not an integer in 28..4096",
                             "give an edge in pixels such as 448 (smaller is faster, 28 is the minimum)")
        if self.kind == "fixed":
            return replace(self, size=size)
        tokens = max(1, (size // 28) ** 2)
        return replace(self, size=size, min_tokens=min(self.min_tokens, tokens), max_tokens=tokens)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize rule: multiples of ``factor``, area within [min, max], aspect kept."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


@dataclass(frozen=True)
class Preset:
    """Conventions of one checkpoint family."""

    name: str
    base_model: str
    adapter: str | None
    layout: Literal["vlm2vec", "gme"]
    image: ImagePolicy
    positions: Literal["rope_index", "plain"]
    instructions: dict[str, str] = field(default_factory=dict)
    max_length: int | None = None
    cuda_dtype: Literal["bf16", "fp16"] = "bf16"
    #: dtype the base weights are rounded to before an adapter is merged (VLM2Vec: bf16), None: as stored
    base_dtype: Literal["bf16"] | None = None
    bbox_format: Literal["qwen2vl"] = "qwen2vl"
    pooling: Literal["last"] = "last"
    description: str = ""

    @property
    def image_size(self) -> int:
        """Edge of a square image as the model sees it (a fixed size after the processor's bound,
        else the smallest the policy keeps)."""
        if self.image.kind == "fixed":
            return int(self.image.processed_hw(0, 0)[0])
        if self.image.size is not None:
            return int(self.image.size)
        return int(math.isqrt(self.image.min_tokens)) * 28

    # -- text pieces ------------------------------------------------------------------------------
    def format_bbox(self, bbox: Box, image_hw: tuple[int, int]) -> str:
        """Box in pixels of an ``image_hw`` image -> Qwen2-VL grounding tokens (0..1000)."""
        h, w = image_hw
        x1, y1, x2, y2 = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise InputError(f"bbox {bbox} has non-finite values", "give pixel coordinates x1 y1 x2 y2")
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"bbox {bbox} is empty or inverted (need x1 < x2 and y1 < y2)",
                             "draw a box with a non-zero width and height")

        def q(v: float, n: int) -> int:
            return int(min(1000, max(0, round(v / n * 1000))))

        return f"<|box_start|>({q(x1, w)},{q(y1, h)}),({q(x2, w)},{q(y2, h)})<|box_end|>"

    @staticmethod
    def format_latlon(lat: float, lon: float) -> str:
        """(lat, lon) in degrees -> the coordinate text used at index and query time."""
        if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InputError(f"lat/lon ({lat}, {lon}) out of range",
                             "latitude must be in [-90, 90] and longitude in [-180, 180]")
        return f"latitude {lat:.4f}, longitude {lon:.4f}"

    def _pieces(self, inp: EmbedInput) -> tuple[str, dict[str, str], str]:
        """(instruction, placeholder values, free text) of one input, validated."""
        text = inp.text.strip() if inp.text is not None else ""
        if inp.image is None and not text:
            raise InputError("empty input: no image and no text", "give a description or an image")
        values = {"{bbox}": "", "{latlon}": "", "{question}": ""}
        if inp.bbox is not None:
            if inp.image is None:
                raise InputError("a bbox needs an image to refer to", "pass the image the box was drawn on")
            values["{bbox}"] = self.format_bbox(inp.bbox, image_hw(inp.image))
        if inp.latlon is not None:
            values["{latlon}"] = self.format_latlon(*inp.latlon)
        instruction = inp.instruction or ""
        if "{question}" in instruction and text:  # the question of a VQA prompt is its text
            values["{question}"], text = text, ""
        return instruction, values, text

    def build_prompt(self, inp: EmbedInput) -> str:
        """The full text fed to the processor, image placeholder included (see the module docstring)."""
        instruction, values, text = self._pieces(inp)
        if self.layout == "gme":
            system = " ".join(_strip_placeholders(instruction).split()) or GME_DEFAULT_INSTRUCTION
            user = " ".join(v for v in (*values.values(), text) if v)
            vision = QWEN2VL_VISION if inp.image is not None else ""
            return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{vision}{user}<|im_end|>\n"
                    "<|im_start|>assistant\n<|endoftext|>")
        body = instruction
        for key, val in values.items():
            if key in body:
                body = body.replace(key, val)
            elif val:
                body = f"{body} {val}"
        body = " ".join(body.split())
        if text:
            body = f"{body} {text}" if body else text
        if inp.image is not None:
            return f"{QWEN2VL_IMAGE}\n{body}\n"
        return f"{body}\n" if instruction.strip() else body

    def with_image_size(self, size: int | None) -> Preset:
        """This preset with its image policy at another edge size (``--image-size``)."""
        return self if size is None else replace(self, image=self.image.with_size(size))

    def with_instructions(self, overrides: dict[str, str] | None) -> Preset:
        """This preset with some instruction texts replaced (an adapted model's saved prompts)."""
        if not overrides:
            return self
        bad = sorted(set(overrides) - set(TASKS))
        if bad:
            raise InputError(f"unknown instruction key(s) {bad}", f"known keys: {', '.join(TASKS)}")
        return replace(self, instructions={**self.instructions, **{k: str(v) for k, v in overrides.items()}})


def _strip_placeholders(text: str) -> str:
    for key in _PLACEHOLDERS:
        text = text.replace(key, "")
    return text


def image_hw(image: object) -> tuple[int, int]:
    """(height, width) of an (H, W, C) array or a PIL image."""
    shape = getattr(image, "shape", None)
    if shape is not None:
        return int(shape[0]), int(shape[1])
    w, h = image.size  # type: ignore[attr-defined]
    return int(h), int(w)


PRESETS: dict[str, Preset] = {
    "vlm2vec-qwen2vl-2b": Preset(
        name="vlm2vec-qwen2vl-2b", base_model="Qwen/Qwen2-VL-2B-Instruct", adapter="TIGER-Lab/VLM2Vec-Qwen2VL-2B",
        layout="vlm2vec", image=ImagePolicy("fixed", 1344, 4, 1280), positions="rope_index",
        instructions=dict(RS_INSTRUCTIONS), cuda_dtype="bf16", base_dtype="bf16",
        description="Qwen2-VL-2B-Instruct (bf16) + VLM2Vec LoRA (merged at load), VLM2Vec prompts, "
                    "1344 px then <= 1280 image tokens (980 px), as its MMEB evaluation"),
    "gme-qwen2vl-2b": Preset(
        name="gme-qwen2vl-2b", base_model="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", adapter=None, layout="gme",
        image=ImagePolicy("smart", None, 256, 1280), positions="plain", instructions=dict(GME_INSTRUCTIONS),
        max_length=1800, cuda_dtype="fp16",
        description="GME Qwen2-VL-2B (chat layout, system instruction, 256..1280 image tokens, 1-D positions)"),
    "tiny": Preset(
        name="tiny", base_model="(local random)", adapter=None, layout="vlm2vec", image=ImagePolicy("fixed", 56),
        positions="rope_index", instructions=dict(RS_INSTRUCTIONS),
        description="tiny random Qwen2-VL for tests and plumbing; its hits are meaningless"),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name (NotFoundError listing the known ones)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise NotFoundError(f"unknown model preset {name!r}",
                            f"known presets: {', '.join(sorted(PRESETS))}") from None
