"""Search: one entry point, :func:`search` (a :class:`~geovec.backend.schemas.SearchRequest` on an index),
and :func:`search_indexes` for several indexes as one; :func:`search_vector` for an embedding.

Modules, in the order a request passes them: :mod:`.query` (build the query, no model), :mod:`.filters`
(``within`` / ``scenes``), :mod:`.hits` (nearest tiles; :mod:`.location` for ``near``), :mod:`.candidates`
(regions of the hits), :mod:`.features` (GeoJSON), :mod:`.run` (the entry point), :mod:`.multi` (several
indexes). The workflows build on :func:`build_query`, :func:`find_hits` and :func:`hit_feature`.
"""

from .features import hit_feature
from .hits import find_hits
from .multi import IndexSet, LocalIndexes, MultiStore, search_indexes, set_search_ok
from .query import Query, build_query, image_query
from .run import search, search_vector

__all__ = ["IndexSet", "LocalIndexes", "MultiStore", "Query", "build_query", "find_hits", "hit_feature", "image_query", "search",
           "search_indexes", "search_vector", "set_search_ok"]
