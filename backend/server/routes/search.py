"""``POST /v1/search``: text / box / point queries -> GeoJSON FeatureCollection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ...schemas import SearchRequest, SearchResponse
from ..deps import ERRORS, State
from ..state import ServerState

log = logging.getLogger(__name__)
router = APIRouter(tags=["search"], responses=ERRORS)


def checked_search(body: SearchRequest, state: ServerState) -> SearchRequest:
    """``body`` as validated: every path it names (index, indexes, raster, image, a ``within`` file) has passed
    the path gate (:func:`...paths.gate`, run by the ``AbsPath`` type under :class:`..confine.ConfineMiddleware`)."""
    return body


def resident_embedder(state: ServerState, index: str | Path) -> Callable[[], Any]:
    """The resident model, loaded on first use (--model, else the index's own); called once input is valid."""
    def get() -> Any:
        from ...service import read_sidecar

        slot = state.models
        if slot.loaded or state.settings.model:
            return slot.get()
        meta = read_sidecar(index)
        return slot.get(str(meta.get("checkpoint") or meta.get("preset") or ""))
    return get


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, state: State) -> SearchResponse:
    """Answer one query with the resident model (loaded on first use: --model, else the index's own)."""
    from ...service import run_search

    req = checked_search(body, state)
    # A job checkpointing meanwhile is safe: IndexStore.open pairs the sidecar with the vector file
    # it vouches for (current or previous) and retries when a checkpoint moves both. The request runs
    # confined to the allowed folders (ConfineMiddleware): a raster given here, its VRT sources too.
    return run_search(req, resident_embedder(state, req.index), state.stores, index_set=state.shards)
