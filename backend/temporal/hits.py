"""What a search adds from time: each hit's acquisition date, its other dates, and score maps.

Called once per search with the query vector (see ``run`` in the region search); touches only
the features' properties and the response's ``query`` info.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..index import dates as idates

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..schemas import SearchRequest


def annotate(store: IndexStore, features: list[dict[str, Any]], vector: np.ndarray, req: SearchRequest,
             labels: set[int] | None, info: dict[str, Any]) -> None:
    """Add ``acquired``/``date_source`` to every hit; ``other_dates`` and score maps when ``req`` asks."""
    dates: dict[str, Any] = {}
    remote = getattr(store, "scene_dates", None)  # shards on a cluster read their own SQLite
    if remote is not None:
        dates.update(remote())
    else:
        for s in getattr(store, "stores", None) or [store]:  # a MultiStore: its indexes' (scene ids are unique)
            dates.update(idates.read(s))
    for f in features:
        d = dates.get(f["properties"].get("scene_id", ""))
        f["properties"]["acquired"] = d.acquired if d else None
        f["properties"]["date_source"] = d.source if d else None
    if getattr(req, "other_dates", False):
        from .other_dates import other_dates

        for f in features:
            rec = store.get(f["properties"]["tile_id"])
            f["properties"]["other_dates"] = other_dates(store, rec, vector, dates)
    if req.score_map:
        from .scoremap import write_score_maps

        title = repr(req.text) if req.text else f"the {req.mode} query"
        info["score_maps"] = write_score_maps(store, vector, req.score_map, labels=labels, title=title)


def date_filter_scenes(store: IndexStore, date_from: str | None, date_to: str | None) -> list[str] | None:
    """Scene ids dated within ``[date_from, date_to]``; None when neither is given.

    Raises:
        InputError: no scene of the index is dated in that range.
    """
    if date_from is None and date_to is None:
        return None
    from ..errors import InputError
    from ..raster.dates import date_range

    if date_from and date_to and date_range(date_to)[1] <= date_range(date_from)[0]:
        raise InputError(f"--date-from {date_from} is after --date-to {date_to}", "swap them")
    ids, undated = idates.scenes_between(store, date_from, date_to)
    if not ids:
        have = idates.span(idates.read(store).values())
        raise InputError(f"no scene of index {store.path} is dated between {date_from or 'the start'} and "
                         f"{date_to or 'now'} (index dates: {have[0] + ' .. ' + have[1] if have else 'none recorded'}"
                         f"{f'; {undated} scene(s) undated' if undated else ''})",
                         "widen the dates, or date scenes with geovec index --date / --date-from-name")
    return ids
