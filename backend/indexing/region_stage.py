"""Region candidates in the indexing pipeline: boxes per tile, prepared on workers, embedded on the main thread.

An index made with ``--regions SPEC`` stores, for every tile, the vectors of its
candidate boxes (:mod:`geovec.backend.regions`), each embedded as *tile image + box
tokens + the region instruction* (``Embedder.prepare_regions`` on a worker,
``Embedder.forward_regions`` on the main thread). Re-indexing an index that has no
regions with ``--regions`` backfills the regions of the tiles already stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..regions import LayerBoxes, RegionSpec, tile_candidates
from ..types import Box, Scene, Window

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)


class RegionMaker:
    """Candidate boxes of a tile (grid + optional layer) and their prepared region prompts (thread-safe)."""

    def __init__(self, embedder: Embedder, spec: RegionSpec, tile_size: int) -> None:
        self.embedder = embedder
        self.spec = spec
        self.tile_size = tile_size
        self.layer = LayerBoxes(spec.layer) if spec.layer else None

    def boxes(self, scene: Scene, window: Window) -> list[Box]:
        extra = self.layer.boxes(scene, window, self.tile_size) if self.layer is not None else []
        return tile_candidates(self.tile_size, self.spec, layer_boxes=extra)

    def prepare(self, scene: Scene, window: Window, image: np.ndarray) -> tuple[list[Box], Any]:
        boxes = self.boxes(scene, window)
        return boxes, self.embedder.prepare_regions(image, boxes)


def embed_regions(embedder: Embedder, prepared: list[tuple[list[Box], Any]]) -> list[tuple[list[Box], np.ndarray]]:
    """Main thread: ``forward_regions`` of each tile's prepared candidates -> (boxes, float32 (K, dim))."""
    import torch

    out: list[tuple[list[Box], np.ndarray]] = []
    with torch.inference_mode():
        for boxes, feats in prepared:
            vecs = embedder.forward_regions(feats)
            out.append((boxes, vecs.float().cpu().numpy().astype(np.float32, copy=False)))
    return out


def setup_regions(store: IndexStore, embedder: Embedder, spec_text: str | None, tile_size: int) -> RegionMaker | None:
    """Enable regions on ``store`` when asked (refusing another spec), or keep the index's own spec.

    ``spec_text`` None: the index's stored spec if it has one, else no regions.
    """
    if spec_text is None:
        stored = store.regions_spec
        if stored is None:
            return None
        return RegionMaker(embedder, RegionSpec.parse(stored), tile_size)
    spec = RegionSpec.parse(spec_text)
    if store.enable_regions(spec.to_text()):
        log.info("regions enabled (%s): tiles already indexed get theirs by a backfill", spec.to_text())
    return RegionMaker(embedder, spec, tile_size)
