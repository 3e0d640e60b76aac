"""Checkpoint-family conventions: prompt layout, image token, bbox and lat/lon text.

The formats follow what each checkpoint was trained with:

* ``vlm2vec-qwen2vl-2b`` — VLM2Vec (TIGER-AI-Lab/VLM2Vec, ``src/model/processor.py``
  ``VLM_IMAGE_TOKENS[QWEN2_VL] = "<|image_pad|>"`` and the model card's usage
  ``f"{image_token} Represent the given image with the following question: ..."``):
  no chat template, the image placeholder then the instruction, text candidates
  as plain text; last-token pooling, L2-normalised.
* ``gme-qwen2vl-2b`` — GME (``gme_inference.py``): the Qwen2 chat template with
  the instruction as system message (``"You are a helpful assistant."`` on the
  corpus side), ``<|vision_start|><|image_pad|><|vision_end|>`` then the text in
  the user turn, ``<|im_start|>assistant\\n<|endoftext|>`` appended; last-token
  pooling, L2-normalised; 256..1280 image tokens.
* ``tiny`` — the local random model, in the VLM2Vec layout.

Boxes: Qwen2-VL grounding uses ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with
integers normalised to 0..1000; Qwen2.5-VL uses absolute pixels of the resized
image (``{"bbox_2d": [x1, y1, x2, y2]}``). Lat/lon text is
``latitude 12.3456, longitude -45.6789`` (4 decimals, ~11 m), identical at index
and query time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InputError, NotFoundError
from ..types import Box, EmbedInput

QWEN2VL_IMAGE = "<|image_pad|>"
QWEN2VL_VISION = "<|vision_start|><|image_pad|><|vision_end|>"

#: Instruction templates per query kind; ``{bbox}`` and ``{latlon}`` are filled in.
RS_INSTRUCTIONS: dict[str, str] = {
    "tile": "Represent the given image.",
    "image_query": "Represent the given image.",
    "text_query": "Find me an overhead satellite image that matches the given caption:",
    "region_query": "Represent the region {bbox} of the given image.",
    "point_query": "Represent the given image taken at {latlon}.",
    "referring_query": "Find the region of an overhead satellite image described by:",
    "vqa": "Represent the given image with the following question: {question}",
    "classification": "Represent the given image for classification:",
    "text_doc": "",
}

GME_INSTRUCTIONS: dict[str, str] = {
    "tile": "You are a helpful assistant.",  # GME's corpus-side default
    "image_query": "You are a helpful assistant.",
    "text_query": "Find an overhead satellite image that matches the given text.",
    "region_query": "Find satellite images similar to the region {bbox} of the given image.",
    "point_query": "Find satellite images similar to the given image taken at {latlon}.",
    "referring_query": "Find the region of a satellite image described by the given text.",
    "vqa": "Answer the question about the given satellite image: {question}",
    "classification": "Classify the given satellite image.",
    "text_doc": "You are a helpful assistant.",
}


@dataclass(frozen=True)
class Preset:
    """Conventions of one checkpoint family."""

    name: str
    base_model: str
    adapter: str | None
    image_size: int  # square model input, a multiple of 28
    bbox_format: Literal["qwen2vl", "qwen25vl"]
    layout: Literal["vlm2vec", "gme"]
    instructions: dict[str, str] = field(default_factory=dict)
    pooling: Literal["last"] = "last"
    description: str = ""

    def format_bbox(self, bbox: Box, image_hw: tuple[int, int]) -> str:
        """Box in pixels of an ``image_hw`` image -> the checkpoint's bbox tokens."""
        h, w = image_hw
        x1, y1, x2, y2 = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise InputError(f"bbox {bbox} has non-finite values", "give pixel coordinates x1 y1 x2 y2")
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"bbox {bbox} is empty or inverted (need x1 < x2 and y1 < y2)",
                             "swap the corners")
        if self.bbox_format == "qwen2vl":
            def q(v: float, n: int) -> int:
                return int(min(1000, max(0, round(v / n * 1000))))

            return f"<|box_start|>({q(x1, w)},{q(y1, h)}),({q(x2, w)},{q(y2, h)})<|box_end|>"
        sx, sy = self.image_size / w, self.image_size / h

        def a(v: float, s: float) -> int:
            return int(min(self.image_size, max(0, round(v * s))))

        return f'{{"bbox_2d": [{a(x1, sx)}, {a(y1, sy)}, {a(x2, sx)}, {a(y2, sy)}]}}'

    @staticmethod
    def format_latlon(lat: float, lon: float) -> str:
        """(lat, lon) in degrees -> the coordinate text used at index and query time."""
        if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InputError(f"lat/lon ({lat}, {lon}) out of range",
                             "latitude must be in [-90, 90] and longitude in [-180, 180]")
        return f"latitude {lat:.4f}, longitude {lon:.4f}"

    def _body(self, inp: EmbedInput) -> str:
        """Instruction with bbox/latlon filled in (appended when it has no placeholder)."""
        instr = inp.instruction or ""
        bbox = latlon = ""
        if inp.bbox is not None:
            if inp.image is None:
                raise InputError("a bbox needs an image to refer to", "pass the image the box was drawn on")
            hw = _image_hw(inp.image)
            bbox = self.format_bbox(inp.bbox, hw)
        if inp.latlon is not None:
            latlon = self.format_latlon(*inp.latlon)
        for key, val in (("{bbox}", bbox), ("{latlon}", latlon)):
            if key in instr:
                instr = instr.replace(key, val)
            elif val:
                instr = f"{instr} {val}".strip()
        return " ".join(instr.split()) if instr else ""

    def build_prompt(self, inp: EmbedInput) -> str:
        """The full text fed to the processor, image placeholder included."""
        has_text = inp.text is not None and inp.text.strip() != ""
        if inp.image is None and not has_text:
            raise InputError("empty input: no image and no text", "give a description or an image")
        body = self._body(inp)
        text = inp.text.strip() if has_text and inp.text else ""
        if self.layout == "gme":
            system = body or "You are a helpful assistant."
            vision = QWEN2VL_VISION if inp.image is not None else ""
            return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{vision}{text}<|im_end|>\n"
                    "<|im_start|>assistant\n<|endoftext|>")
        parts = [QWEN2VL_IMAGE] if inp.image is not None else []
        if body:
            parts.append(body)
        if text:
            parts.append(text)
        return " ".join(parts)


def _image_hw(image: object) -> tuple[int, int]:
    shape = getattr(image, "shape", None)
    if shape is not None:
        return int(shape[0]), int(shape[1])
    w, h = image.size  # type: ignore[attr-defined]
    return int(h), int(w)


PRESETS: dict[str, Preset] = {
    "vlm2vec-qwen2vl-2b": Preset(
        name="vlm2vec-qwen2vl-2b", base_model="Qwen/Qwen2-VL-2B-Instruct",
        adapter="TIGER-Lab/VLM2Vec-Qwen2VL-2B", image_size=448, bbox_format="qwen2vl", layout="vlm2vec",
        instructions=dict(RS_INSTRUCTIONS),
        description="Qwen2-VL-2B-Instruct + VLM2Vec LoRA (VLM2Vec prompt format)"),
    "gme-qwen2vl-2b": Preset(
        name="gme-qwen2vl-2b", base_model="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", adapter=None,
        image_size=448, bbox_format="qwen2vl", layout="gme", instructions=dict(GME_INSTRUCTIONS),
        description="GME Qwen2-VL-2B (chat template, system instruction)"),
    "tiny": Preset(
        name="tiny", base_model="(local random)", adapter=None, image_size=56, bbox_format="qwen2vl",
        layout="vlm2vec", instructions=dict(RS_INSTRUCTIONS),
        description="tiny random Qwen2-VL for tests and plumbing; its hits are meaningless"),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name (NotFoundError listing the known ones)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise NotFoundError(f"unknown model preset {name!r}",
                            f"known presets: {', '.join(sorted(PRESETS))}") from None
