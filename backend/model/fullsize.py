"""A Qwen2-VL-2B-sized checkpoint with random weights, built locally.

For measuring what the real model costs on a machine (memory, seconds per tile)
without downloading it: the public Qwen2-VL-2B-Instruct configuration (2.2 B
parameters), random weights initialised straight in bf16, the tiny model's locally
built tokenizer (its ids fit in the large vocabulary) and the real processor bounds.
It loads through ``load_embedder`` exactly as a downloaded checkpoint does. Its
vectors are meaningless; only shapes, speed and memory are real.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Qwen/Qwen2-VL-2B-Instruct's config.json values.
QWEN2VL_2B: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
    "max_position_embeddings": 32768, "tie_word_embeddings": True,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "hidden_size": 1536,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
}
MIN_PIXELS, MAX_PIXELS = 3136, 12845056


def write_fullsize_model(directory: str | Path, *, preset: str = "vlm2vec-qwen2vl-2b", seed: int = 0,
                         device: str = "cpu") -> Path:
    """Write a random Qwen2-VL-2B-sized checkpoint (bf16 safetensors, ~4.4 GB) to ``directory``.

    Args:
        directory: target folder (created).
        preset: the preset recorded in geovec.json (its prompt layout and image policy).
        seed: weights are deterministic for a given seed and device.
        device: where the weights are initialised (``cuda`` is much faster than CPU).
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from .tiny import SPECIAL_TOKENS, build_tokenizer

    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size=1024)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        **QWEN2VL_2B, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise in bf16: half the memory of an fp32 build
    try:
        with torch.device(device):
            model = Qwen2VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(out, safe_serialization=True)
    del model
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
                                 tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=tokenizer.chat_template)
    processor.save_pretrained(out)
    (out / "geovec.json").write_text(json.dumps({"preset": preset, "random": "Qwen2-VL-2B architecture"}, indent=2))
    log.info("random Qwen2-VL-2B-sized checkpoint written to %s", out)
    return out
