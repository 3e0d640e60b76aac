"""The encoder's forward pass, and the prefix-shared forward of K prompts on one image.

One procedure for every preset, written against the Qwen2-VL modules (not against
``Qwen2VLModel.forward``, whose position handling changed across transformers
releases and keeps per-call state in ``rope_deltas``):

1. token embeddings, with the vision tower's output scattered over the image tokens;
2. position ids: ``rope_index`` (Qwen2-VL's multimodal rope index, what the full
   model computes itself) or ``plain`` (1-D positions per row, as GME's inference
   code feeds its decoder);
3. the text decoder, then the last real token of each row, L2-normalised.

:func:`forward_shared_prefix` runs step 3 once on the prefix the K prompts share
(every token up to the last one they have in common, the image included), repeats
its key/value cache K times and runs only the K suffixes, sliced from the *same*
position ids the full batch would get. Its result equals K full forwards.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

PositionMode = Literal["rope_index", "plain"]


def backbone(model: Any) -> Any:
    """The ``Qwen2VLModel`` (vision tower + text decoder) inside a causal-LM or peft wrapper."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model.model


def input_embeddings(model: Any, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
                     image_grid_thw: torch.Tensor | None) -> torch.Tensor:
    """Token embeddings with the image features in place of the image tokens."""
    bb = backbone(model)
    embeds = bb.get_input_embeddings()(input_ids)
    if pixel_values is None:
        return embeds
    visual = bb.visual
    feats = visual(pixel_values.type(visual.dtype), grid_thw=image_grid_thw)
    if isinstance(feats, tuple | list):
        feats = torch.cat(list(feats), dim=0)
    mask = input_ids == bb.config.image_token_id
    if int(mask.sum()) != feats.shape[0]:
        raise ValueError(f"{int(mask.sum())} image tokens but {feats.shape[0]} image features")
    return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), feats.to(embeds.device, embeds.dtype))


def position_ids(model: Any, mode: PositionMode, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 image_grid_thw: torch.Tensor | None) -> torch.Tensor:
    """(3, B, L) rotary position ids of a padded batch."""
    if mode == "plain":
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return pos.unsqueeze(0).expand(3, -1, -1)
    pos, _ = backbone(model).get_rope_index(input_ids, image_grid_thw, None, attention_mask)
    return pos


def pool_last(hidden: torch.Tensor, attention_mask: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """The last real token of each row (right or left padding), float32; L2-normalised unless ``normalize=False``."""
    if bool((attention_mask[:, -1] == 1).all()):
        pooled = hidden[:, -1]
    else:
        last = attention_mask.long().sum(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if not normalize:
        return pooled.float()
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)


def forward_full(model: Any, mode: PositionMode, batch: Any, *, normalize: bool = True) -> torch.Tensor:
    """Embed a processor batch -> (n, dim) float32 (grad-enabled), L2-normalised unless ``normalize=False``."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    grid = batch.get("image_grid_thw")
    embeds = input_embeddings(model, ids, batch.get("pixel_values"), grid)
    pos = position_ids(model, mode, ids, mask, grid)
    out = backbone(model).language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                                         use_cache=False, return_dict=True)
    return pool_last(out.last_hidden_state, mask, normalize=normalize)


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int) -> int:
    """Tokens every row has in common from the start (all real); 0 if that prefix misses an image token.

    The prefix must hold every image token of row 0 (the image is what is worth sharing) and
    leave at least one token of each row for the suffix, which must hold no image token.
    """
    same = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == 1).all(dim=0)
    p = int(same.long().cumprod(0).sum())
    p = min(p, int(attention_mask.sum(dim=1).min()) - 1)
    image_pos = (input_ids[0] == image_token_id).nonzero()
    if not len(image_pos) or p <= int(image_pos[-1]) or bool((input_ids[:, p:] == image_token_id).any()):
        return 0
    return p


def forward_shared_prefix(model: Any, mode: PositionMode, batch: Any) -> torch.Tensor:
    """K prompts on ONE image: one forward of the shared prefix, K batched suffix forwards.

    ``batch`` holds the K tokenised prompts (right-padded) and the pixels of the ONE
    image they share (``pixel_values`` of one image, ``image_grid_thw`` of shape (1, 3)).
    The suffixes are text only, so their positions continue the prefix's: for each of the
    three rotary axes, one past the prefix's largest position, then one per token, which
    is what Qwen2-VL's rope index (and the plain 1-D scheme) gives text after an image.
    Falls back to K full forwards when the prompts share nothing worth sharing.
    """
    from transformers import DynamicCache

    ids, mask = batch["input_ids"], batch["attention_mask"]
    grid = batch.get("image_grid_thw")
    pixel_values = batch.get("pixel_values")
    k, length = ids.shape
    bb = backbone(model)
    p = shared_prefix_length(ids, mask, bb.config.image_token_id) if k > 1 and pixel_values is not None else 0
    if p == 0:
        pv = pixel_values.repeat(k, 1) if pixel_values is not None else None
        gk = grid.repeat(k, 1) if grid is not None else None
        return forward_full(model, mode, {"input_ids": ids, "attention_mask": mask, "pixel_values": pv,
                                          "image_grid_thw": gk})
    prefix_pos = position_ids(model, mode, ids[:1, :p], mask[:1, :p], grid)  # (3, 1, p)
    start = prefix_pos.amax(dim=(1, 2), keepdim=True) + 1  # (3, 1, 1)
    suffix_pos = start + torch.arange(length - p, device=ids.device).view(1, 1, -1)
    suffix_pos = suffix_pos.expand(3, k, length - p)
    prefix_embeds = input_embeddings(model, ids[:1, :p], pixel_values, grid)
    cache = DynamicCache()
    bb.language_model(inputs_embeds=prefix_embeds, attention_mask=mask[:1, :p], position_ids=prefix_pos,
                      past_key_values=cache, use_cache=True, cache_position=torch.arange(p, device=ids.device),
                      return_dict=True)
    cache.batch_repeat_interleave(k)
    suffix_embeds = bb.get_input_embeddings()(ids[:, p:])
    out = bb.language_model(inputs_embeds=suffix_embeds, attention_mask=mask, position_ids=suffix_pos,
                            past_key_values=cache, use_cache=True,
                            cache_position=torch.arange(p, length, device=ids.device), return_dict=True)
    return pool_last(out.last_hidden_state, mask[:, p:])
