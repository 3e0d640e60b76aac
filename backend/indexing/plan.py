"""Stage 1 of indexing: decide per scene what to do and cut the work into batches.

* :func:`plan_scenes` deletes scenes whose files vanished, then decides per scene
  what to do (skip / resume / re-embed / backfill regions) and lists the windows
  still missing (:class:`ScenePlan`).
* :func:`iter_batches` cuts the planned windows into :class:`BatchJob` s, which the
  read/embed/write stages (:mod:`.stages`) take, in this process or on Ray.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GeoVecError
from ..schemas import FileError
from ..types import Scene, Stretch, TilingParams, Window

if TYPE_CHECKING:
    from ..index.store import IndexStore

log = logging.getLogger(__name__)


@dataclass
class ScenePlan:
    """What to index for one scene: the windows still missing from the index."""

    scene: Scene
    stretch: Stretch
    windows: list[Window]
    resumed: bool = False  # some tiles were already stored by an interrupted run
    backfill: list[tuple[str, Window]] = field(default_factory=list)  # stored tiles lacking their regions


@dataclass
class BatchJob:
    """Up to ``batch_size`` windows of one scene; ``last`` marks the scene's final batch."""

    plan: ScenePlan
    windows: list[Window]
    last: bool
    tile_ids: list[str] | None = None  # a region backfill batch: these stored tiles' windows


@dataclass
class Plan:
    """The outcome of :func:`plan_scenes`."""

    scenes: list[ScenePlan] = field(default_factory=list)
    unchanged: int = 0
    removed: int = 0


def _under(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _gone(path: str) -> bool:
    """True only when ``path`` provably no longer exists (a folder that cannot be read proves nothing)."""
    try:
        os.stat(path)
        return False
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False


def remove_vanished(store: IndexStore, scene_ids: set[str], *, folder: Path,
                    keep_paths: set[str] = frozenset(),  # type: ignore[assignment]
                    keep_folders: Sequence[str] = (), seen: set[str] | None = None) -> int:
    """Delete indexed scenes under ``folder`` that the scan no longer finds.

    Scenes with a source in ``keep_paths`` (files still there but failing to open
    now) or under one of ``keep_folders`` (folders the scan could not list) keep
    their tiles; the scan reports those problems as per-file errors instead. With
    ``seen`` (every file the scan found), a scene with a source the scan did not
    see but that is not provably gone (it cannot be checked) is kept too.
    Returns the number of scenes removed.
    """
    removed = 0
    keep_dirs = [Path(d) for d in keep_folders]
    for row in store.scenes():
        sid = row["scene_id"]
        sources = row.get("sources") or []
        if isinstance(sources, str):
            sources = json.loads(sources)
        if sid in scene_ids or not sources or not all(_under(p, folder) for p in sources):
            continue
        if any(str(Path(p).resolve()) in keep_paths for p in sources):
            continue
        unseen = [p for p in sources if seen is not None and str(Path(p).resolve()) not in seen]
        if any(_under(p, d) for p in sources for d in keep_dirs) or not all(_gone(p) for p in unseen):
            log.warning("scene %s was not found by the scan but its files are not gone: kept",
                        row.get("name", sid))
            continue
        n = store.delete_scene(sid)
        removed += 1
        log.info("removed vanished scene %s (%d tiles)", row.get("name", sid), n)
    return removed


def plan_scene(store: IndexStore, scene: Scene, params: TilingParams) -> ScenePlan | None:
    """What is left to do for ``scene``; None when it is complete and unchanged.

    A changed fingerprint drops the scene's tiles first; a partial scene resumes
    with its stored stretch, skipping the tile ids already stored.
    """
    from ..raster.stretch import compute_stretch
    from ..raster.tiling import GridSampler, tile_id

    status = store.scene_status(scene.scene_id)
    stretch: Stretch | None = None
    done: set[str] = set()
    if status is not None:
        fingerprint, state = status
        if fingerprint != scene.fingerprint:
            n = store.delete_scene(scene.scene_id)
            log.info("scene %s changed: dropped %d tiles, re-embedding", scene.name, n)
        elif state == "complete":
            backfill = store.tiles_without_regions(scene.scene_id)
            kept = store.scene(scene.scene_id) if backfill else None
            return ScenePlan(scene, kept[1], [], backfill=backfill) if kept else None
        else:
            stored = store.scene(scene.scene_id)
            stretch = stored[1] if stored else None
            done = store.tile_ids(scene.scene_id)
    resumed = bool(done)
    if stretch is None:
        stretch = compute_stretch(scene, percentiles=params.percentiles, nodata=params.nodata,
                                  detect_fill=params.fill != "off")
        store.upsert_scene(scene, stretch)
    windows = list(GridSampler(scene, params))
    if done:
        windows = [w for w in windows if tile_id(scene, w) not in done]
    return ScenePlan(scene, stretch, windows, resumed, backfill=store.tiles_without_regions(scene.scene_id))


def plan_scenes(store: IndexStore, scenes: Sequence[Scene], params: TilingParams, *, folder: Path | None,
                keep_paths: set[str] = frozenset(),  # type: ignore[assignment]
                errors: list[FileError] | None = None, keep_folders: Sequence[str] = (),
                seen: set[str] | None = None) -> Plan:
    """Stage 1: delete vanished scenes, then plan every scene (see :func:`plan_scene`).

    A scene whose stretch or windows cannot be computed is appended to ``errors``
    (raised if ``errors`` is None) and the run goes on.
    """
    plan = Plan()
    if folder is not None:  # a folder run drops the scenes gone from it; a run over listed files drops nothing
        plan.removed = remove_vanished(store, {s.scene_id for s in scenes}, folder=folder, keep_paths=keep_paths,
                                       keep_folders=keep_folders, seen=seen)
    for scene in scenes:
        try:
            sp = plan_scene(store, scene, params)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the run
            if errors is None:
                raise
            msg = str(e) if isinstance(e, GeoVecError) else f"{type(e).__name__}: {e}"
            errors.append(FileError(path=",".join(scene.sources), error=msg))
            log.warning("scene %s: %s", scene.name, msg)
            continue
        if sp is None:
            plan.unchanged += 1
        else:
            plan.scenes.append(sp)
    return plan


def iter_batches(plans: Sequence[ScenePlan], batch_size: int) -> Iterator[BatchJob]:
    """Cut each scene's windows into batches; a scene with nothing left yields one empty last batch."""
    for p in plans:
        for i in range(0, len(p.backfill), batch_size):
            part = p.backfill[i : i + batch_size]
            yield BatchJob(p, [w for _, w in part], not p.windows and i + batch_size >= len(p.backfill),
                           tile_ids=[t for t, _ in part])
        if not p.windows:
            if not p.backfill:
                yield BatchJob(p, [], True)
            continue
        for i in range(0, len(p.windows), batch_size):
            chunk = p.windows[i : i + batch_size]
            yield BatchJob(p, chunk, i + batch_size >= len(p.windows))
