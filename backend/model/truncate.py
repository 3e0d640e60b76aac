"""Keep query text within what the model can read: a token budget per input, truncation to it.

The HTTP schemas cap text at :data:`~geovec.backend.schemas.MAX_TEXT_CHARS` characters;
this module is the second guard, for every caller of ``Embedder.prepare``: a text is
cut to the tokens left once the prompt template and the image take theirs from the
model's context (``max_position_embeddings`` and the tokenizer's ``model_max_length``),
so no input can make a forward pass run over the model's limit (or for minutes).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..types import EmbedInput

log = logging.getLogger(__name__)

#: Tokens assumed for an image when the processor does not say (Qwen2-VL at 448 px: 256).
DEFAULT_IMAGE_TOKENS = 1024
#: Never budget fewer text tokens than this (a model with a tiny context still reads a short query).
MIN_TEXT_TOKENS = 32


def context_limit(model: Any, tokenizer: Any) -> int:
    """The longest token sequence the model takes: its position limit and the tokenizer's, whichever is smaller."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    limits = [int(v) for v in (getattr(text_config, "max_position_embeddings", None),
                               getattr(tokenizer, "model_max_length", None)) if v and int(v) < 10**9]
    return min(limits) if limits else 32768


def image_tokens(processor: Any, image_size: int) -> int:
    """Tokens one ``image_size`` square image takes in the prompt (Qwen2-VL: patches / merge^2)."""
    ip = getattr(processor, "image_processor", None)
    patch, merge = getattr(ip, "patch_size", None), getattr(ip, "merge_size", None)
    if not patch or not merge:
        return DEFAULT_IMAGE_TOKENS
    side = -(-int(image_size) // int(patch))
    return -(-side * side // (int(merge) ** 2))


def truncate_input(inp: EmbedInput, *, tokenizer: Any, limit: int, prompt_tokens: int, image_cost: int) -> EmbedInput:
    """``inp`` with its text cut to the tokens left within ``limit`` (unchanged when it fits)."""
    if not inp.text:
        return inp
    budget = max(MIN_TEXT_TOKENS, limit - prompt_tokens - (image_cost if inp.image is not None else 0))
    if len(inp.text) <= budget:  # a token is at least one character: it fits without tokenising
        return inp
    ids = tokenizer(inp.text, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return inp
    text = tokenizer.decode(ids[:budget], skip_special_tokens=True)
    log.info("query text of %d tokens cut to the model's %d-token budget", len(ids), budget)
    return dataclasses.replace(inp, text=text)


def fit_inputs(embedder: Any, inputs: list[EmbedInput]) -> list[EmbedInput]:
    """Every input's text truncated to the model's context (see :func:`truncate_input`)."""
    if not any(inp.text for inp in inputs):
        return inputs
    tokenizer = embedder.processor.tokenizer
    limit = context_limit(embedder.model, tokenizer)
    cost = image_tokens(embedder.processor, embedder.preset.image_size)
    out = []
    for inp in inputs:
        if not inp.text or len(inp.text) <= MIN_TEXT_TOKENS:
            out.append(inp)
            continue
        template = embedder.preset.build_prompt(dataclasses.replace(inp, text=None)) if inp.image is not None \
            else embedder.preset.build_prompt(dataclasses.replace(inp, text="x"))
        prompt_tokens = len(tokenizer(template, add_special_tokens=False)["input_ids"]) + 8
        out.append(truncate_input(inp, tokenizer=tokenizer, limit=limit, prompt_tokens=prompt_tokens, image_cost=cost))
    return out
