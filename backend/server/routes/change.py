"""``POST /v1/change``: what changed between two dates -> change maps, change.geojson, ranked pairs."""

from __future__ import annotations

from fastapi import APIRouter

from ...schemas_change import ChangeRequest, ChangeResponse
from ..deps import ERRORS, State
from .search import resident_embedder

router = APIRouter(tags=["change"], responses=ERRORS)


@router.post("/change", response_model=ChangeResponse)
def change(body: ChangeRequest, state: State) -> ChangeResponse:
    """Compare ``before`` with ``after`` (indexes, or dates within ``index``); writes under ``out``.

    Every path in ``body`` has passed the path gate as it was validated; the request runs confined to the
    allowed folders (ConfineMiddleware)."""
    from ...service import run_change

    model_index = body.index or body.after
    return run_change(body, resident_embedder(state, model_index) if body.to else None, state.stores)
