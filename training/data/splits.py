"""Train/validation split by spatial blocks, never by random tiles.

Overlapping or neighbouring tiles are near-duplicates, so a random split leaks.
Items (features, points, tiles) are grouped into square blocks of ``block_size``
map units by their anchor coordinate; whole blocks go to validation, chosen
greedily so that every class with at least two blocks is represented on both
sides. Training items closer than ``buffer`` to any validation item are dropped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from ...backend.errors import InputError


def block_keys(xs: np.ndarray, ys: np.ndarray, block_size: float) -> list[tuple[int, int]]:
    """The (bx, by) block of every coordinate."""
    if not block_size > 0:
        raise InputError(f"block_size must be > 0, got {block_size}", "use e.g. 64 pixels")
    bx = np.floor(np.asarray(xs, dtype=float) / block_size).astype(int)
    by = np.floor(np.asarray(ys, dtype=float) / block_size).astype(int)
    return list(zip(bx.tolist(), by.tolist(), strict=True))


def spatial_block_split(
    xs: Sequence[float] | np.ndarray,
    ys: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    *,
    block_size: float,
    val_fraction: float = 0.3,
    seed: int = 0,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Choose validation blocks; return a boolean ``is_val`` mask over the items.

    Args:
        xs, ys: anchor coordinates of the items (e.g. feature centroids in pixels).
        labels: class of each item (use one value for caption data).
        block_size: block edge in the units of ``xs``/``ys``.
        val_fraction: target share of each class's weight in validation.
        seed: block order seed.
        weights: per-item weight (e.g. pixel count); default 1.
    """
    n = len(labels)
    if not (len(xs) == len(ys) == n) or n == 0:
        raise InputError(f"xs, ys, labels must be non-empty and of one length, got {len(xs)}, {len(ys)}, {n}", "")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}", "e.g. 0.3")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    keys = block_keys(np.asarray(xs), np.asarray(ys), block_size)
    members: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        members[k].append(i)
    class_total: dict[str, float] = defaultdict(float)
    class_blocks: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for i, lab in enumerate(labels):
        class_total[lab] += float(w[i])
        class_blocks[lab].add(keys[i])
    target = {c: val_fraction * t for c, t in class_total.items()}
    in_val: dict[str, float] = defaultdict(float)
    val_blocks_of: Counter[str] = Counter()
    order = list(members)
    np.random.default_rng(seed).shuffle(order)  # type: ignore[arg-type]
    is_val = np.zeros(n, dtype=bool)
    for key in order:
        per_class: dict[str, float] = defaultdict(float)
        for i in members[key]:
            per_class[labels[i]] += float(w[i])
        # never move a class's last training block to validation
        if any(val_blocks_of[c] + 1 >= len(class_blocks[c]) for c in per_class):
            continue
        gain = sum(min(v, max(0.0, target[c] - in_val[c])) for c, v in per_class.items())
        overshoot = sum(max(0.0, in_val[c] + v - 1.5 * target[c]) for c, v in per_class.items())
        if gain <= 0 or overshoot > gain:
            continue
        for c, v in per_class.items():
            in_val[c] += v
            val_blocks_of[c] += 1
        is_val[members[key]] = True
    return is_val


def drop_near(train_xy: np.ndarray, val_xy: np.ndarray, buffer: float) -> np.ndarray:
    """Mask of training points farther than ``buffer`` (Chebyshev) from every validation point."""
    train_xy, val_xy = np.asarray(train_xy, dtype=float), np.asarray(val_xy, dtype=float)
    if buffer <= 0 or len(val_xy) == 0 or len(train_xy) == 0:
        return np.ones(len(train_xy), dtype=bool)
    keep = np.ones(len(train_xy), dtype=bool)
    for start in range(0, len(train_xy), 4096):
        part = train_xy[start : start + 4096]
        dist = np.abs(part[:, None, :] - val_xy[None, :, :]).max(axis=-1).min(axis=1)
        keep[start : start + 4096] = dist > buffer
    return keep
