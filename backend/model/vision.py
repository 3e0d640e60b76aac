"""A faster forward of the Qwen2-VL vision tower: batched attention and optional ``torch.compile``.

Transformers' SDPA vision attention (4.53+) makes one attention call per image, because the
images of a batch are packed into one sequence (``cu_seqlens``); 4.52 makes one call over the
whole packed batch with a block-diagonal mask. When every image of a batch has the same
patch grid (tiles: the usual case), the packed sequence is simply ``(images, patches)``, so
:func:`configure_vision` can swap in a forward that runs each block's attention as ONE
``scaled_dot_product_attention`` call with the images as the batch dimension (no mask, so
the flash / cuDNN kernels apply). The rotary tables are computed once for that grid.

With ``compile=True`` one ``torch.compile``'d block function serves all blocks and batch
sizes (the batch dimension is dynamic; each image size gets its own graph), fusing the
element-wise work (fp32 rotary embedding, QuickGELU, layer norms); a single image runs
the batched block eagerly. Batches of mixed grids, and gradient-checkpointed training, go
through transformers' own forward unchanged.

The math is transformers' (same modules, same weights, same fp32 rotary), only the
batching differs. Both options default to off: ``GEOVEC_BATCHED_VISION=1`` and
``GEOVEC_COMPILE=1`` (compile implies batched) turn them on for every model
``load_embedder`` loads.
"""

from __future__ import annotations

import functools
import logging
import os
import types
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ..errors import InputError, ModelUnavailableError
from .forward import backbone

__all__ = ["configure_vision", "vision_options", "vision_mode", "warm_up", "CompileError"]

log = logging.getLogger(__name__)

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class CompileError(ModelUnavailableError):
    """``torch.compile`` of the vision blocks failed (no C++ compiler, unsupported backend, ...)."""

    code = "compile_failed"


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InputError(f"{name}={os.environ.get(name)!r} is not a boolean", f"set {name} to 1 or 0")


def vision_options(batched: bool | None = None, compile: bool | None = None) -> tuple[bool, bool]:
    """``(batched, compile)``: the arguments, else ``GEOVEC_BATCHED_VISION`` / ``GEOVEC_COMPILE``.

    Compiling implies the batched forward (the compiled function is its block).
    """
    comp = _env_flag("GEOVEC_COMPILE") if compile is None else bool(compile)
    bat = _env_flag("GEOVEC_BATCHED_VISION") if batched is None else bool(batched)
    return bat or comp, comp


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Transformers' vision rotary embedding (in fp32, back to ``x``'s dtype)."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


def block_forward(blk: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """One ``Qwen2VLVisionBlock`` on ``x`` (images, patches, dim): attention of all images in one call.

    ``cos`` / ``sin``: (patches, head_dim) fp32 rotary tables, the same for every image.
    """
    attn = blk.attn
    b, n, d = x.shape
    heads = int(attn.num_heads)
    qkv = attn.qkv(blk.norm1(x)).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (images, heads, patches, head_dim)
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
    x = x + attn.proj(out.transpose(1, 2).reshape(b, n, d))
    return x + blk.mlp(blk.norm2(x))


@functools.lru_cache(maxsize=1)
def _compiled_block() -> Any:
    """One compiled block function for every model and block (module weights are graph inputs, so the
    32 blocks share one graph) and every batch size (the batch dimension is marked dynamic at each call).

    Made once per process: dynamo keeps its graphs per compiled function, so switching the option
    off and on again reuses them instead of compiling again.
    """
    return torch.compile(block_forward)


def _compiled_step(compiled: Any) -> Any:
    import torch._dynamo

    def step(blk: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        torch._dynamo.mark_dynamic(x, 0)
        return compiled(blk, x, cos, sin)

    return step


def _uniform_grid(grid_thw: torch.Tensor) -> tuple[int, int] | None:
    """``(h, w)`` when every image (and frame) has the same patch grid, else None."""
    hw = grid_thw[:, 1:]
    if hw.shape[0] == 0 or not bool((hw == hw[:1]).all()):
        return None
    return int(hw[0, 0]), int(hw[0, 1])


def _fast_forward(self: Any, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """The vision tower's forward with batched attention (bound to the tower by :func:`configure_vision`)."""
    state = self._geovec_vision
    grid = _uniform_grid(grid_thw)
    if grid is None or (self.gradient_checkpointing and self.training):
        return state["original"](hidden_states, grid_thw, **kwargs)
    h, w = grid
    x = self.patch_embed(hidden_states)
    frames = x.shape[0] // (h * w)
    one = torch.tensor([[1, h, w]], dtype=grid_thw.dtype, device=grid_thw.device)
    emb = self.rot_pos_emb(one)  # (patches, head_dim / 2), the same for every image of this grid
    emb = torch.cat((emb, emb), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()  # in transformers' order (cos in the table's dtype)
    x = x.view(frames, h * w, -1)
    # one image runs eager: a batch of 1 would need a graph of its own (dynamo specialises sizes 0 and 1)
    step = _compiled_step(state["compiled"]) if state["compiled"] is not None and frames > 1 else block_forward
    try:
        for blk in self.blocks:
            x = step(blk, x, cos, sin)
    except Exception as e:  # noqa: BLE001 - a compile failure surfaces at the first call
        if state["compiled"] is None or not _is_compile_error(e):
            raise
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CompileError(f"torch.compile of the vision blocks failed: {reason}",
                           "run without compile (unset GEOVEC_COMPILE, drop --compile)") from e
    return self.merger(x.reshape(frames * h * w, -1))


def _is_compile_error(e: BaseException) -> bool:
    """Whether ``e`` comes from dynamo / inductor rather than from running the model (e.g. out of memory)."""
    if isinstance(e, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return False
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "torch._subclasses"))


def configure_vision(model: Any, *, batched: bool = False, compile: bool = False) -> None:
    """Set how ``model``'s vision tower runs (see the module docstring); both off = transformers' forward.

    Safe to call again with other options (the benchmark switches between them on one model).
    """
    visual = backbone(model).visual
    batched = batched or compile
    if not batched:
        if "forward" in visual.__dict__:
            del visual.forward
        visual.__dict__.pop("_geovec_vision", None)
        return
    original = visual.__dict__.get("_geovec_vision", {}).get("original") or visual.forward
    compiled = None
    if compile:
        compiled = _compiled_block()
    visual.__dict__["_geovec_vision"] = {"original": original, "compiled": compiled}
    visual.forward = types.MethodType(_fast_forward, visual)
    log.info("vision tower: batched attention for equal-size images%s", ", compiled blocks" if compile else "")


def vision_mode(model: Any) -> str:
    """``per-image`` (transformers' forward), ``batched`` or ``batched+compile``."""
    state = backbone(model).visual.__dict__.get("_geovec_vision")
    if state is None:
        return "per-image"
    return "batched+compile" if state["compiled"] is not None else "batched"


def warm_up(embedder: Any, batch_sizes: tuple[int, ...] = (2,)) -> None:
    """Embed blank images at ``batch_sizes`` and this embedder's image size (compiles the vision blocks
    for it); raises :class:`CompileError` when compiling fails."""
    import numpy as np

    from ..types import EmbedInput

    size = embedder.preset.image.size or 224
    blank = np.zeros((size, size, 3), np.uint8)
    with torch.inference_mode():
        for n in batch_sizes:
            embedder.encode([EmbedInput(embedder.instructions["tile"], image=blank)] * n, batch_size=n)
