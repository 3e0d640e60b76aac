"""``POST /v1/change``: what changed between two dates -> change maps, change.geojson, ranked pairs."""

from __future__ import annotations

from fastapi import APIRouter

from ...schemas_change import ChangeRequest, ChangeResponse
from ..deps import ERRORS, State
from ..paths import check_path
from .search import resident_embedder

router = APIRouter(tags=["change"], responses=ERRORS)


@router.post("/change", response_model=ChangeResponse)
def change(body: ChangeRequest, state: State) -> ChangeResponse:
    """Compare ``before`` with ``after`` (indexes, or dates within ``index``); writes under ``out``."""
    from ...paths import confined
    from ...service import run_change

    update: dict[str, str] = {"out": str(check_path(body.out, "out", state.settings))}
    for field in ("before", "after"):
        value = getattr(body, field)
        if value.startswith(("/", "~", ".")):  # an index path, not a date
            update[field] = str(check_path(value, "index", state.settings))
    if body.index is not None:
        update["index"] = str(check_path(body.index, "index", state.settings))
    req = body.model_copy(update=update)
    model_index = req.index or req.after
    with confined(state.settings.allowed_roots):
        return run_change(req, resident_embedder(state, model_index) if req.to else None, state.stores)
