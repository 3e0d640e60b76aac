"""Analyst workflows over HTTP: classify, few-shot, refine, locate, ask, search by vector."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from ...schemas import SearchResponse
from ...schemas_workflows import (
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
from ..deps import ERRORS, State
from ..state import ServerState
from .search import checked_search, resident_embedder

log = logging.getLogger(__name__)
router = APIRouter(tags=["workflows"], responses=ERRORS)


def _paths(body: Any, state: ServerState, **names: str) -> Any:
    """``body`` as validated: its path fields (``index`` and ``names``) have passed the path gate of the ``AbsPath``
    type, and files reached from them (VRT sources, layers, outputs) are checked as the request runs confined."""
    return body


def _with_query(req: Any, state: ServerState) -> Any:
    """``req`` whose nested search query (if any) searches ``req.index``, its paths checked as ``/v1/search`` does."""
    if req.query is None:
        return req
    q = checked_search(req.query.model_copy(update={"index": req.index}), state)
    return req.model_copy(update={"query": q})


@router.post("/classify", response_model=ClassifyResponse)
def classify(body: ClassifyRequest, state: State) -> ClassifyResponse:
    """Zero-shot: every tile (or those in ``area``) -> the best class prompt; class maps under ``out_dir``."""
    from ...workflows.service import run_classify

    req = _paths(body, state, out_dir="output folder")
    return run_classify(req, resident_embedder(state, req.index), state.stores)


@router.post("/fewshot", response_model=ClassifyResponse)
def fewshot(body: FewShotRequest, state: State) -> ClassifyResponse:
    """Few-shot from a labelled layer (file or inline GeoJSON); held-out accuracy by spatial blocks in ``cv``."""
    from ...workflows.service import run_fewshot

    req = _paths(body, state, labels="label layer", out_dir="output folder")
    return run_fewshot(req, state.stores)


@router.post("/refine", response_model=RefineResponse)
def refine(body: RefineRequest, state: State) -> RefineResponse:
    """One relevance-feedback round; send ``query_vector`` back as ``vector`` next round."""
    from ...workflows.service import run_refine

    req = _with_query(_paths(body, state, save_marks="marks layer"), state)
    return run_refine(req, resident_embedder(state, req.index), state.stores)


@router.post("/locate", response_model=LocateResponse)
def locate(body: LocateRequest, state: State) -> LocateResponse:
    """Where is this? Hits of a box/point query, an image or a vector, clustered into ranked locations."""
    from ...workflows.service import run_locate
    from .embed import decode_image

    req = _with_query(_paths(body, state), state)
    image = decode_image(req.image_b64, 0) if req.image_b64 is not None else None
    return run_locate(req, resident_embedder(state, req.index), state.stores, image=image)


@router.post("/ask", response_model=AskResponse)
def ask(body: AskRequest, state: State) -> AskResponse:
    """Rank candidate answers to a question about a box (the model's VQA instruction)."""
    from ...workflows.service import run_ask

    req = _paths(body, state, raster="raster")
    return run_ask(req, resident_embedder(state, req.index), state.stores)


@router.post("/search/vector", response_model=SearchResponse)
def search_vector(body: VectorSearchRequest, state: State) -> SearchResponse:
    """Search an index with an embedding (e.g. from ``/v1/embed`` or ``/v1/refine``); no model needed."""
    from ...workflows.service import run_vector_search

    return run_vector_search(_paths(body, state), state.stores)
