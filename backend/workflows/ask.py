"""Ask about a region: a question on a drawn box, candidate answers ranked by the model.

The box is read like a box query (square context window, the scene's stored
stretch, the box as bbox tokens); the query is that region with the model's
``vqa`` instruction (``{question}`` replaced by the question); each candidate
answer is embedded as plain text (``text_doc``). Answers are ranked by cosine
similarity, best first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..schemas import SearchRequest
from ..schemas_workflows import Answer, AskRequest, AskResponse
from ..types import EmbedInput

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder
    from ..search import Query


def check_answers(req: AskRequest) -> list[str]:
    """The question and the distinct candidate answers (InputError when either is missing)."""
    if not req.question.strip():
        raise InputError("the question is empty", "type a question, e.g. 'what covers this area?'")
    answers = [a.strip() for a in req.answers if a.strip()]
    if not answers:
        raise InputError(f"the question {req.question!r} has no candidate answers",
                         "give answers to rank (e.g. yes no, or a class list)")
    dup = sorted({a for a in answers if answers.count(a) > 1})
    if dup:
        raise InputError(f"duplicate answer(s) {dup}", "give each answer once")
    return answers


def region(store: IndexStore, req: AskRequest) -> Query:
    """The region query of ``req.box`` (reads pixels, no model)."""
    from ..search import build_query

    check_answers(req)
    return build_query(store, SearchRequest(index=req.index, box=req.box, crs=req.crs, raster=req.raster))


def ask(embedder: Embedder, req: AskRequest, query: Query) -> AskResponse:
    """Rank ``req.answers`` for ``req.question`` about the region ``query``."""
    t0 = time.perf_counter()
    answers = check_answers(req)
    instr = embedder.instructions
    template = instr.get("vqa") or "{question}"
    text = template.replace("{question}", req.question.strip())
    if "{question}" not in template:
        text = f"{text} {req.question.strip()}"
    q = EmbedInput(text, image=query.image, bbox=query.bbox)
    cand = [EmbedInput(instr.get("text_doc", ""), text=a) for a in answers]
    vecs = embedder.encode([q, *cand], batch_size=8)
    scores = vecs[1:] @ vecs[0]
    order = np.argsort(-scores)
    ranked = [Answer(answer=answers[i], score=round(float(scores[i]), 6), rank=r + 1)
              for r, i in enumerate(order.tolist())]
    return AskResponse(question=req.question, answers=ranked, query={"kind": "ask", **(query.info or {})},
                       took_ms=round((time.perf_counter() - t0) * 1000, 2))
