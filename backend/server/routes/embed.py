"""``POST /v1/embed``: raw vectors for interleaved inputs (notebooks, experiments)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
from typing import Any

from fastapi import APIRouter

from ...errors import InputError
from ...schemas import EmbedItem, EmbedRequest, EmbedResponse
from ..deps import ERRORS, State

router = APIRouter(tags=["embed"], responses=ERRORS)
MAX_PIXELS = 4096 * 4096


def decode_image(b64: str, i: int) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"inputs[{i}].image_b64 is not valid base64: {e}", "send PNG/JPEG bytes, base64-encoded") from e
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"inputs[{i}] image is {im.width}x{im.height}, over {MAX_PIXELS} pixels",
                                 "send a smaller image (the model resizes to its own input size anyway)")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"inputs[{i}].image_b64 is not a readable image: {e}", "send PNG or JPEG bytes") from e


def to_embed_input(item: EmbedItem, i: int) -> Any:
    """A validated :class:`EmbedInput` (images decoded; ``instruction`` still as sent)."""
    from ...types import EmbedInput

    for name, values in (("bbox", item.bbox), ("latlon", item.latlon)):
        if values is not None and not all(math.isfinite(v) for v in values):
            raise InputError(f"inputs[{i}].{name} must be finite numbers, got {values}", "send plain numbers")
    if item.latlon is not None and not (-90 <= item.latlon[0] <= 90 and -180 <= item.latlon[1] <= 180):
        raise InputError(f"inputs[{i}].latlon {item.latlon} out of range", "lat in [-90, 90], lon in [-180, 180]")
    if item.text is None and item.image_b64 is None:
        raise InputError(f"inputs[{i}] has neither text nor image_b64", "give a text, an image or both")
    if item.text is not None and not item.text.strip() and item.image_b64 is None:
        raise InputError(f"inputs[{i}].text is empty", "type a description, or send an image")
    image = decode_image(item.image_b64, i) if item.image_b64 is not None else None
    if item.bbox is not None:
        if image is None:
            raise InputError(f"inputs[{i}].bbox needs an image", "send image_b64 with the bbox in its pixels")
        x1, y1, x2, y2 = item.bbox
        h, w = image.shape[:2]
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise InputError(f"inputs[{i}].bbox {item.bbox} is not inside the {w}x{h} image with x1<x2, y1<y2",
                             "give x1 y1 x2 y2 in the image's pixels")
    return EmbedInput(item.instruction, image=image, bbox=tuple(item.bbox) if item.bbox else None,  # type: ignore[arg-type]
                      latlon=tuple(item.latlon) if item.latlon else None, text=item.text)  # type: ignore[arg-type]


@router.post("/embed", response_model=EmbedResponse)
def embed(body: EmbedRequest, state: State) -> EmbedResponse:
    """L2-normalised vectors, in input order, from the resident model (or ``model``).

    ``instruction`` may be a preset key (``tile``, ``text_query``, ``region_query``,
    ``point_query``...), replaced by the model's own instruction text, or literal text.
    """
    slot = state.models
    # validate (and decode) every input before any model is loaded
    inputs = [to_embed_input(item, i) for i, item in enumerate(body.inputs)]
    emb = slot.get(body.model)
    instructions = dict(emb.preset.instructions)
    inputs = [dataclasses.replace(inp, instruction=instructions.get(inp.instruction, inp.instruction))
              for inp in inputs]
    vectors = emb.encode(inputs, batch_size=8)
    return EmbedResponse(dim=int(emb.dim), vectors=[[float(x) for x in row] for row in vectors])
