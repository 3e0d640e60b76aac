"""Service functions of the workflows, shared by the CLI and the HTTP routes.

Like :mod:`geovec.backend.service`: each opens the index read-only (from the
caller's cache when given), validates the input before resolving the model
(``embedder`` may be a callable called only once the input is valid), and never
writes to the index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..loading import EmbedderLike, open_index, resolve_embedder
from ..schemas import SearchResponse
from ..schemas_workflows import (
    AskRequest,
    AskResponse,
    ClassifyRequest,
    ClassifyResponse,
    FewShotRequest,
    LocateRequest,
    LocateResponse,
    RefineRequest,
    RefineResponse,
    VectorSearchRequest,
)

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

Cache = MutableMapping[str, "IndexStore"] | None


@contextmanager
def _store(path: str, cache: Cache) -> Iterator[IndexStore]:
    store = open_index(path, cache=cache)
    try:
        yield store
    finally:
        if cache is None:
            store.close()


def _model(embedder: EmbedderLike | None, store: IndexStore, index: str) -> Embedder:
    """The model, checked against (and sized to) the one the index was built with."""
    from ..binding import bind

    return bind(resolve_embedder(embedder, model=None, index=index), store.meta, index=str(index))


def _vector(values: list[float], store: IndexStore, what: str) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float32)
    if vec.shape[0] != int(store.dim):
        raise ModelMismatchError(f"{what} has {vec.shape[0]} values but index {store.path} holds {store.dim}-d vectors",
                                 "send a vector from the model this index was built with")
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if not np.isfinite(vec).all() or not np.isfinite(norm):
        raise InputError(f"{what} has values too large for float32", "send an embedding, e.g. from /v1/embed")
    if not norm > 0:
        raise InputError(f"{what} is all zeros", "send an embedding, e.g. from /v1/embed")
    return vec


def run_classify(req: ClassifyRequest, embedder: EmbedderLike | None = None, store_cache: Cache = None
                 ) -> ClassifyResponse:
    """Zero-shot classification of ``req.index`` (or its area) into ``req.classes``."""
    from .classify import check, zero_shot

    with _store(req.index, store_cache) as store:
        check(store, req)
        return zero_shot(store, _model(embedder, store, req.index), req)


def run_fewshot(req: FewShotRequest, store_cache: Cache = None, *,
                max_features_per_class: int | None = None) -> ClassifyResponse:
    """Few-shot classification from a labelled layer (needs no model: the index holds the vectors)."""
    from .fewshot import fewshot

    with _store(req.index, store_cache) as store:
        return fewshot(store, req, max_features_per_class=max_features_per_class)


def run_refine(req: RefineRequest, embedder: EmbedderLike | None = None, store_cache: Cache = None
               ) -> RefineResponse:
    """One relevance-feedback round (the model is used only when ``req.query`` must be embedded)."""
    from .feedback import check_marks, query_vector, refine

    if req.level == "region":
        return _refine_regions(req, embedder, store_cache)
    check_marks(req)
    with _store(req.index, store_cache) as store:
        if req.vector is not None:
            return refine(store, req, _vector(req.vector, store, "vector"))
        from ..search import build_query

        assert req.query is not None
        build_query(store, req.query.model_copy(update={"index": req.index}))  # validate before the model
        emb = _model(embedder, store, req.index)
        return refine(store, req, query_vector(store, emb, req))


def _refine_regions(req: RefineRequest, embedder: EmbedderLike | None, store_cache: Cache) -> RefineResponse:
    """A feedback round over region hits: region vectors in, region hits (and region marks) out."""
    from .region_feedback import check_region_marks, refine_regions, region_query_vector, require_regions

    check_region_marks(req)
    with _store(req.index, store_cache) as store:
        require_regions(store)
        if req.vector is not None:
            return refine_regions(store, req, _vector(req.vector, store, "vector"))
        from ..search import build_query

        assert req.query is not None
        build_query(store, req.query.model_copy(update={"index": req.index}))  # validate before the model
        emb = _model(embedder, store, req.index)
        return refine_regions(store, req, region_query_vector(store, emb, req))


def run_locate(req: LocateRequest, embedder: EmbedderLike | None = None, store_cache: Cache = None,
               image: np.ndarray | None = None) -> LocateResponse:
    """Where is this? ``image`` is ``req.image_b64`` already decoded (the route decodes it)."""
    from ..search import build_query, find_hits, image_query
    from .geolocate import locate

    t0 = time.perf_counter()
    with _store(req.index, store_cache) as store:
        if req.vector is not None:
            vec = _vector(req.vector, store, "vector")
            hits = find_hits(store, vec, k=req.k)
            return locate(hits, radius_km=req.radius_km, max_locations=req.max_locations, out_crs=req.out_crs,
                          query={"kind": "vector"}, t0=t0)
        if req.query is not None:
            if req.query.text is not None:
                query = build_query(store, req.query)
            else:
                query = build_query(store, req.query.model_copy(update={"index": req.index}))
        else:
            if image is None:
                raise InputError("image_b64 was not decoded", "send PNG/JPEG bytes, base64-encoded")
            query = image_query(image)
        emb = _model(embedder, store, req.index)
        vec = emb.encode([query.embed_input(emb)], batch_size=1)[0]
        hits = find_hits(store, vec, k=req.k, exclude_wgs84=query.exclude_wgs84)
        return locate(hits, radius_km=req.radius_km, max_locations=req.max_locations, out_crs=req.out_crs,
                      query={"kind": query.kind, **(query.info or {})}, t0=t0)


def run_ask(req: AskRequest, embedder: EmbedderLike | None = None, store_cache: Cache = None) -> AskResponse:
    """Rank candidate answers to a question about a box."""
    from .ask import ask, region

    with _store(req.index, store_cache) as store:
        query = region(store, req)
        return ask(_model(embedder, store, req.index), req, query)


def run_vector_search(req: VectorSearchRequest, store_cache: Cache = None) -> SearchResponse:
    """Search ``req.index`` with an embedding (no model needed)."""
    from ..search import search_vector

    with _store(req.index, store_cache) as store:
        return search_vector(store, _vector(req.vector, store, "vector"), k=req.k, min_score=req.min_score,
                             out_crs=req.out_crs, near=req.near)


#: What the CLI passes when it loads the index's model lazily.
LazyEmbedder = Callable[[], "Embedder"]
