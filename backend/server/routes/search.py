"""``POST /v1/search``: text / box / point queries -> GeoJSON FeatureCollection."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from ...schemas import SearchRequest, SearchResponse
from ..deps import ERRORS, State
from ..paths import check_path

log = logging.getLogger(__name__)
router = APIRouter(tags=["search"], responses=ERRORS)


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, state: State) -> SearchResponse:
    """Answer one query with the resident model (loaded on first use: --model, else the index's own)."""
    from ...service import read_sidecar, run_search

    path = check_path(body.index, "index", state.settings)
    update: dict[str, Any] = {"index": str(path),
                              "indexes": [str(check_path(p, "index", state.settings)) for p in body.indexes]}
    if body.raster is not None:
        update["raster"] = str(check_path(body.raster, "raster", state.settings))
    if body.image is not None:
        update["image"] = str(check_path(body.image, "image", state.settings))
    if body.within is not None and not body.within.lstrip().startswith("{") and len(body.within) < 4096 \
            and "(" not in body.within:  # a vector file path, not GeoJSON or WKT
        update["within"] = str(check_path(body.within.strip(), "within file", state.settings))
    req = body.model_copy(update=update)

    def embedder():  # called by run_search only once the input is valid
        slot = state.models
        if slot.loaded or state.settings.model:
            return slot.get()
        meta = read_sidecar(path)
        return slot.get(str(meta.get("checkpoint") or meta.get("preset") or ""))

    # A job checkpointing meanwhile is safe: IndexStore.open pairs the sidecar with the vector file
    # it vouches for (current or previous) and retries when a checkpoint moves both.
    from ...paths import confined

    with confined(state.settings.allowed_roots):  # a raster given here: its VRT sources too
        return run_search(req, embedder, state.stores)
