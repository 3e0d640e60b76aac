"""The change service: one :class:`ChangeRequest` in, maps and polygons written, a summary out.

The CLI (``geovec change``) and ``POST /v1/change`` build the same request and call :func:`run_change`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..schemas_change import ChangeRequest, ChangeResponse


def text_vector(embedder: Any, text: str) -> np.ndarray:
    """``text`` embedded as a text query (the same instruction a text search uses)."""
    from ..search import Query

    q = Query("text", "text_query", text=text)
    return np.asarray(embedder.encode([q.embed_input(embedder)], batch_size=1)[0], np.float32)


def run_change(req: ChangeRequest, embedder: Any = None,
               store_cache: MutableMapping[str, IndexStore] | None = None,
               resolve: Callable[..., Any] | None = None) -> ChangeResponse:
    """Compare ``req.before`` with ``req.after`` and write the results under ``req.out``.

    ``embedder`` (an Embedder or a callable giving one) embeds ``req.to``; None loads the index's model.
    Nothing is written unless every check passes.
    """
    from ..schemas_change import ChangeResponse
    from ..service import open_index
    from .change import plan_change
    from .change_out import features, write_change
    from .regions_change import region_pairs

    opened: list[IndexStore] = []

    def _open(p: str) -> IndexStore:
        s = open_index(p, cache=store_cache)
        opened.append(s)
        return s

    try:
        out = Path(req.out)
        if out.exists() and not out.is_dir():
            raise InputError(f"out {req.out!r} is a file", "give a folder for the change maps")
        res = plan_change(req.before, req.after, index=req.index, min_overlap=req.min_overlap, open_index=_open)
        if req.level == "region":
            res = region_pairs(res)  # InputError when an index has no stored regions
        if req.to is not None:
            from ..binding import bind

            emb = embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder
            if emb is None:
                from ..service import model_for_index

                emb = model_for_index(res.after.store.path)
            emb = bind(emb, res.after.store.meta, index=str(res.after.store.path))
            from .change import rescore_toward

            rescore_toward(res, text_vector(emb, req.to), req.to)
        written = write_change(res, out, gpkg=req.gpkg)
        return ChangeResponse(
            before=req.before, after=req.after, level=req.level, to=req.to, pairs=len(res.pairs),
            unmatched_after=res.unmatched_after, before_dates=list(res.before.span or []),
            after_dates=list(res.after.span or []), geojson=written["geojson"], gpkg=written.get("gpkg"),
            maps=written["maps"], top=features(res, top=req.top))
    finally:
        if store_cache is None:
            for s in opened:
                s.close()
