"""``/v1/indexes``: list, create, open, info and delete index directories."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Query

from ...errors import BusyError, ExistsError, GeoVecError, NotFoundError
from ...schemas import ABSOLUTE_PATH, PATH_KEY, IndexCreateRequest, IndexInfo, IndexOpenRequest
from ..deps import ERRORS, State
from ..paths import check_path

log = logging.getLogger(__name__)
router = APIRouter(prefix="/indexes", tags=["indexes"], responses=ERRORS)
INDEX_FILES = ("index.json", "vectors.hnsw", "meta.sqlite", "meta.sqlite-wal", "meta.sqlite-shm", "writer.lock")
#: An index path in the query string; checked by the same gate as the body's ``AbsPath`` (``check_path``).
PathQuery = Query(min_length=1, max_length=4096,
                  json_schema_extra={"pattern": ABSOLUTE_PATH + "[^\\u0000]*$", PATH_KEY: "path"},
                  description="index directory (absolute)")


def _info(path: Path) -> IndexInfo:
    from ...service import index_info

    return index_info(path)


def _sidecar_only(path: Path, err: GeoVecError) -> IndexInfo:
    """A listing entry for an index that does not open (corrupt, busy...): what the sidecar says."""
    from ...service import read_sidecar

    try:
        meta = read_sidecar(path)
    except GeoVecError:
        meta = {}
    return IndexInfo(path=str(path), count=int(meta.get("count") or 0), dim=int(meta.get("dim") or 0),
                     space=str(meta.get("space", "")), preset=str(meta.get("preset", "")),
                     checkpoint=str(meta.get("checkpoint", "")), tiling=dict(meta.get("tiling") or {}),
                     scenes=0, created=str(meta.get("created", "")), updated=str(meta.get("updated", "")),
                     extra={"error": err.code, "detail": err.message, "hint": err.hint})


@router.get("", response_model=list[IndexInfo])
def list_indexes(state: State) -> list[IndexInfo]:
    """Indexes under ``<data dir>/indexes`` plus those opened or created through this server."""
    paths: set[Path] = {Path(p) for p in state.opened}
    root = state.settings.indexes_dir
    if root.is_dir():
        paths |= {d.resolve() for d in root.iterdir() if (d / "index.json").is_file()}
    out = []
    for p in sorted(paths):
        if not (p / "index.json").is_file():
            continue
        try:
            out.append(_info(p))
        except GeoVecError as e:
            out.append(_sidecar_only(p, e))
    return out


@router.post("", response_model=IndexInfo, status_code=201)
def create_index(body: IndexCreateRequest, state: State) -> IndexInfo:
    """Create an empty index for ``model`` (default: the loaded or configured model)."""
    from ...index.store import IndexStore
    from ...service import tiling_params

    path = check_path(body.path, "index", state.settings)
    if (path / "index.json").exists():
        raise ExistsError(f"an index already exists at {body.path!r}", "open it with POST /v1/indexes/open")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExistsError(f"{body.path!r} exists and is not an empty folder", "choose a new index directory")
    emb = state.models.get(body.model)
    store = IndexStore.create(path, dim=int(emb.dim), preset=emb.preset.name, checkpoint=emb.checkpoint_id,
                              model=emb.identity,
                              tiling=tiling_params(body.tiling).to_dict())
    store.close()
    state.opened.add(str(path))
    return _info(path)


@router.post("/open", response_model=IndexInfo)
def open_index(body: IndexOpenRequest, state: State) -> IndexInfo:
    """Open an existing index (validated, kept open for searches) and describe it."""
    from ...service import open_index as service_open

    path = check_path(body.path, "index", state.settings)
    service_open(path, cache=state.stores)
    state.opened.add(str(path))
    return _info(path)


@router.get("/info", response_model=IndexInfo)
def index_info(state: State, path: str = PathQuery) -> IndexInfo:
    return _info(check_path(path, "index", state.settings))


@router.delete("", response_model=IndexInfo)
def delete_index(state: State, path: str = PathQuery) -> IndexInfo:
    """Delete an index directory (only its own files; refused while a job writes it)."""
    p = check_path(path, "index", state.settings)
    if not (p / "index.json").is_file():
        raise NotFoundError(f"no index at {path!r} (missing index.json)", "list indexes with GET /v1/indexes")
    if state.jobs.writing(p):
        raise BusyError(f"a job is writing index {path!r}", "cancel the job first (POST /v1/jobs/{id}/cancel)")
    try:
        info = _info(p)
    except GeoVecError as e:
        info = _sidecar_only(p, e)
    if str(p) in state.stores:
        del state.stores[str(p)]
    state.opened.discard(str(p))
    for name in INDEX_FILES:
        (p / name).unlink(missing_ok=True)
    try:
        p.rmdir()
    except OSError:
        log.info("index %s deleted; folder kept (it holds other files)", p)
    return info
