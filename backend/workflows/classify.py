"""Zero-shot classification: every tile of an index (or an area) -> the best of the user's class prompts.

Each class is one text prompt (``template`` with the class name, or the user's
own prompt) embedded after the model's ``classification`` instruction (or the
user's). A tile's class is the prompt closest to its stored vector; its score
is that cosine similarity and its margin the gap to the runner-up. With
``level="region"`` the items are the index's stored regions (:mod:`.region_level`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..errors import InputError
from ..schemas_workflows import ClassifyRequest, ClassifyResponse
from ..types import EmbedInput
from .labelling import check_classes, respond
from .region_level import labelling, load_regions, require_regions
from .tiles import TileTable, area_mask, date_mask, load_tiles, normalise, parse_area

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)


def class_inputs(req: ClassifyRequest, instructions: dict[str, str]) -> list[EmbedInput]:
    """One embed input per class (validated before any model work)."""
    classes = check_classes(req.classes)
    prompts = dict(req.prompts or {})
    unknown = sorted(set(prompts) - set(classes))
    if unknown:
        raise InputError(f"prompts given for unknown class(es) {unknown}", f"classes are {classes}")
    if "{label}" not in req.template and len({prompts.get(c) for c in classes}) < len(classes):
        raise InputError(f"template {req.template!r} has no {{label}}: classes would share one prompt",
                         "put {label} in the template, e.g. 'a satellite image of {label}'")
    instruction = req.instruction if req.instruction is not None else instructions.get("classification", "")
    texts = [prompts.get(c) or req.template.replace("{label}", c) for c in classes]
    blank = [c for c, t in zip(classes, texts, strict=True) if not t.strip()]
    if blank:
        raise InputError(f"class(es) {blank} have an empty prompt", "give each class some text")
    return [EmbedInput(instruction, text=t) for t in texts]


def check(store: IndexStore, req: ClassifyRequest) -> None:
    """Validate ``req`` against ``store`` without the model (classes, area, output CRS)."""
    from ..raster import geometry

    class_inputs(req, {})
    geometry.parse_crs(req.out_crs)
    if req.area is not None:
        parse_area(req.area.box, req.area.wkt, req.area.crs)
    if int(store.count) == 0:
        raise InputError(f"index {store.path} holds no tiles", "index a folder of rasters first")
    if req.level == "region":
        require_regions(store)


def zero_shot(store: IndexStore, embedder: Embedder, req: ClassifyRequest) -> ClassifyResponse:
    """Classify every tile (or stored region) of ``store`` (inside ``req.area``) into ``req.classes``."""
    t0 = time.perf_counter()
    check(store, req)
    classes = check_classes(req.classes)
    prompts = normalise(embedder.encode(class_inputs(req, embedder.instructions), batch_size=8))
    table: TileTable = load_tiles(store)
    area = parse_area(req.area.box, req.area.wkt, req.area.crs) if req.area is not None else None
    if req.level == "region":
        table = load_regions(store, table)
    table = table.take(area_mask(table, area, req.area.within_mode if req.area is not None else "centre")
                       & date_mask(store, table, req.area))
    if not len(table):
        raise InputError(f"no indexed {req.level} is centred inside the area", "draw the area over indexed imagery")
    scores = table.vectors @ prompts.T
    lab = labelling(table, classes, scores, store)
    log.info("zero-shot: %d %ss into %d classes", len(table), req.level, len(classes))
    return respond(store, lab, out_dir=req.out_dir, out_crs=req.out_crs, return_features=req.return_features,
                   cv=None, took_ms=(time.perf_counter() - t0) * 1000)
