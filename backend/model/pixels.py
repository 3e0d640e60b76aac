"""Qwen2-VL pixel patches computed on the model's device, from uint8 images.

The checkpoint's (slow, NumPy) image processor costs ~150 ms per 1344 px image on one
CPU thread and holds the GIL, so a GPU waits for it. When an image already has the
size the processor would resize it to (the fixed-size presets resize it beforehand),
the processor's resize is the identity and what remains is arithmetic: rescale
(float64 product, cast to float32), normalise ((x - mean) / std in float32), and the
patch layout (temporal frames repeated, 2x2 merge blocks contiguous). Here that runs in
torch on the device, on a uint8 batch four times smaller to copy than float pixels,
and gives the processor's ``pixel_values`` exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .presets import smart_resize

__all__ = ["U8_KEY", "smart_resize", "device_patches_ok", "stack_u8", "grid_of", "patchify"]

#: Batch key of the (N, H, W, 3) uint8 images patchified on the device.
U8_KEY = "pixel_u8"


def device_patches_ok(image_processor: Any, size: int) -> bool:
    """Whether a ``size`` x ``size`` image passes the processor's resize unchanged (standard settings)."""
    ip = image_processor
    factor = int(ip.patch_size) * int(ip.merge_size)
    standard = (getattr(ip, "do_resize", True) and getattr(ip, "do_rescale", True)
                and getattr(ip, "do_normalize", True) and getattr(ip, "do_convert_rgb", True))
    return bool(standard) and size % factor == 0 and smart_resize(
        size, size, factor, int(ip.min_pixels), int(ip.max_pixels)) == (size, size)


def stack_u8(images: list[Any]) -> Any:
    """Same-size RGB PIL images -> a (N, H, W, 3) uint8 tensor."""
    import torch

    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))


def grid_of(u8: Any, image_processor: Any) -> Any:
    """``image_grid_thw`` (N, 3) of a (N, H, W, 3) batch: one frame, (H, W) in patches."""
    import torch

    n, h, w = u8.shape[:3]
    p = int(image_processor.patch_size)
    return torch.tensor([[1, h // p, w // p]] * n, dtype=torch.long)


def patchify(u8: Any, image_processor: Any) -> Any:
    """(N, H, W, 3) uint8 on any device -> the processor's float32 ``pixel_values`` (N*gh*gw, 3*T*P*P)."""
    import torch

    ip = image_processor
    p, t, m = int(ip.patch_size), int(ip.temporal_patch_size), int(ip.merge_size)
    n, h, w, c = u8.shape
    x = (u8.to(torch.float64) * float(ip.rescale_factor)).to(torch.float32)
    mean = torch.tensor(ip.image_mean, dtype=torch.float32, device=u8.device)
    std = torch.tensor(ip.image_std, dtype=torch.float32, device=u8.device)
    x = ((x - mean) / std).permute(0, 3, 1, 2)  # (N, C, H, W)
    x = x.unsqueeze(1).expand(n, t, c, h, w)  # one frame, repeated to the temporal patch
    gh, gw = h // p, w // p
    x = x.reshape(n, t, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(n * gh * gw, c * t * p * p)
