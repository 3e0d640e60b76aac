"""A tiny random Qwen2-VL checkpoint in standard Hugging Face layout.

Written entirely locally (no hub access): a few-layer Qwen2-VL with random
weights, a byte-level BPE tokenizer trained in-process on a small built-in
corpus plus every Qwen2-VL special token, and the Qwen2-VL image processor. It
loads through exactly the same ``from_pretrained`` code as a real checkpoint.
Its embeddings are meaningless until trained; it exists for tests, the demo
fallback and plumbing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

_WORDS = """
water forest shrubland sediment herbaceous developed agriculture urban city town village road roads highway
bridge pier port harbour harbor ship ships boat boats storage tank tanks circular oil refinery airport runway
airplane plane building buildings house houses residential industrial commercial park parking lot field fields
farmland crop crops grass grassland meadow wetland marsh swamp river lake pond sea ocean coast beach sand desert
bare soil rock mountain hill snow ice cloud clouds shadow tree trees palm orchard vineyard greenhouse solar panel
stadium church school railway station container dock canal dam reservoir quarry mine golf course baseball tennis
basketball court swimming pool roundabout intersection overpass interchange parking next to near beside along the
a an of in on at with and or find me image images satellite aerial overhead photo scene region represent given
matches caption description similar taken latitude longitude location area north south east west left right top
bottom center centre small large big dense sparse green blue red white dark bright many few one two three
""".split()


def _corpus() -> list[str]:
    lines = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 12)]
    lines += [f"latitude {d}.{d}{d}, longitude -{d}{d}.{d}" for d in range(10)]
    lines += ["Represent the given image.", "Find me an overhead satellite image that matches the given caption:",
              "Represent the region of the given image.", "(0,0),(1000,1000) 0123456789 .,:;()[]{}\"'-_/"]
    return lines * 4


#: Qwen2's pre-tokenizer pattern (its tokenizer.json and tokenization_qwen2.PRETOKENIZE_REGEX).
QWEN2_PRETOKENIZE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                     r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def build_tokenizer(vocab_size: int):  # noqa: ANN202 - transformers type
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own pre-tokenizer (digits one by one, as the Python Qwen2Tokenizer splits them), so the
    # fast and the slow tokenizer of the tiny model give the same ids, as they do for real checkpoints
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    chat = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|>"
            "<|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              unk_token=None, bos_token=None, additional_special_tokens=SPECIAL_TOKENS[1:],
                              chat_template=chat, model_max_length=4096)


#: Qwen/Qwen2-VL-2B-Instruct's preprocessor_config.json (keys and values), for checkpoints in the real layout.
QWEN2VL_PREPROCESSOR: dict[str, object] = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
}


def write_tiny_model(directory: str | Path, *, seed: int = 0, image_size: int = 56, preset: str = "tiny",
                     initializer_range: float = 0.02, real_layout: bool = False) -> Path:
    """Write a tiny random Qwen2-VL checkpoint (HF layout + geovec.json) to ``directory``.

    Args:
        directory: target folder (created; existing files are overwritten).
        seed: weights are deterministic for a given seed.
        image_size: the largest square input the saved processor keeps as is.
        preset: the preset recorded in geovec.json (``tiny``, or a real family's layout
            for tests of that family's input conventions).
        real_layout: as Qwen2-VL-2B-Instruct is published: bf16 weights and its
            ``preprocessor_config.json`` (:data:`QWEN2VL_PREPROCESSOR`; ``image_size`` is unused).
        initializer_range: weight scale; the default 0.02 makes attention nearly uniform,
            so positions barely matter; ~0.3 makes the model sensitive to them.

    Returns:
        The directory, loadable with ``load_embedder(str(directory))``.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size=1024)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = 64, 4
    config = Qwen2VLConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=4096,
        rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]}, tie_word_embeddings=True,
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        initializer_range=initializer_range,
    )
    config.vision_config.initializer_range = initializer_range
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    if real_layout:
        model.bfloat16()
    model.save_pretrained(out, safe_serialization=True)
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=max(image_size, 28) ** 2)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=tokenizer.chat_template)
    processor.save_pretrained(out)
    if real_layout:
        (out / "preprocessor_config.json").write_text(json.dumps(QWEN2VL_PREPROCESSOR, indent=2))
    (out / "geovec.json").write_text(json.dumps({"preset": preset, "seed": seed}, indent=2))
    log.info("tiny random Qwen2-VL written to %s", out)
    return out


#: LoRA targets of the tiny adapter (the decoder's projections, as VLM2Vec's adapters).
TINY_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_tiny_adapter(directory: str | Path, base: str | Path, *, seed: int = 0, rank: int = 4,
                       legacy_layout: bool = True) -> Path:
    """Write a random LoRA adapter for the tiny model at ``base`` in peft's saved layout.

    With ``legacy_layout`` the weight keys use the module paths of transformers < 4.52
    (``base_model.model.model.layers...``), as VLM2Vec's published Qwen2-VL adapters do.
    Both LoRA matrices are random (peft initialises B to zero), so the adapter changes
    the embeddings.
    """
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import Qwen2VLForConditionalGeneration

    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TINY_LORA_TARGETS, lora_dropout=0.0,
                        init_lora_weights="gaussian")
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    state = get_peft_model_state_dict(peft_model)
    if legacy_layout:
        state = {_legacy_key(k): v.contiguous() for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "adapter_model.safetensors"))
    cfg = config.to_dict()
    cfg["base_model_name_or_path"] = str(Path(base).resolve())
    cfg["target_modules"] = sorted(cfg["target_modules"])
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, default=str))
    return out


def _legacy_key(key: str) -> str:
    """Today's Qwen2-VL module path -> the one transformers < 4.52 used (decoder at ``model.layers``)."""
    return key.replace("base_model.model.model.language_model.", "base_model.model.model.").replace(
        "base_model.model.model.visual.", "base_model.model.visual.")
