"""Query building: text / box / point / image -> a :class:`Query` ready to embed (no model).

A query is built before any model is loaded, so bad input fails first:
:func:`build_query` resolves the raster, the pixel box and the context window and
reads the query image with the scene's *stored* stretch (so query preprocessing
equals index preprocessing). :mod:`.run` embeds it and searches the index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, NotFoundError, OutOfBoundsError
from ..schemas import SearchRequest
from ..types import Box, EmbedInput, Scene, Stretch, TilingParams, Window

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class Query:
    """A query ready to embed: instruction key plus the interleaved parts, and what to exclude."""

    kind: str  # "text" | "box" | "point" | "image"
    instruction_key: str  # key into Preset.instructions
    text: str | None = None
    image: np.ndarray | None = None
    bbox: Box | None = None  # pixels of ``image``
    latlon: tuple[float, float] | None = None
    exclude_wgs84: BaseGeometry | None = None  # hits intersecting this are dropped
    scene_id: str | None = None
    window: Window | None = None
    info: dict[str, Any] | None = None
    ground_size_m: float | None = None  # a box query: sqrt(width x height) of the drawn box on the ground

    def embed_input(self, embedder: Embedder) -> EmbedInput:
        instruction = embedder.preset.instructions[self.instruction_key]
        return EmbedInput(instruction, image=self.image, bbox=self.bbox, latlon=self.latlon, text=self.text)


def index_tiling(store: IndexStore) -> TilingParams:
    """The tiling recorded in the index sidecar."""
    return TilingParams.from_dict((store.meta or {}).get("tiling") or {})


def resolve_scene(store: IndexStore, req: SearchRequest, tiling: TilingParams) -> tuple[Scene, Stretch]:
    """The scene a box/point query refers to, with the stretch used to index it.

    ``req.raster`` wins (its indexed stretch if indexed, else a fresh one); otherwise
    the indexed scene that contains the query coordinates (where several do: the
    finest ground resolution, then the most bands).
    """
    from ..raster import geometry

    if req.raster:
        found = store.scene_for_path(req.raster)
        if found is not None:
            return found
        if not Path(req.raster).exists():
            raise NotFoundError(f"raster {req.raster!r} does not exist", "give the path of a raster file")
        from ..raster.scan import open_scene
        from ..raster.stretch import compute_stretch

        scene = open_scene(req.raster, bands=tiling.bands)
        log.info("raster %s is not in the index; computing its stretch", req.raster)
        return scene, compute_stretch(scene, percentiles=tiling.percentiles)

    coords = req.box if req.box is not None else req.point
    assert coords is not None
    crs = geometry.parse_crs(req.crs)
    candidates = _scenes_holding(store, req.box is not None, list(coords), crs, strict=True)
    if candidates:
        # Overlapping scenes: the finest ground resolution wins, then the most bands (imagery over a
        # one-band product such as a class map on the same grid), then the name; --raster overrides.
        return min(candidates, key=lambda c: (round(geometry.ground_resolution(c[0]), 6), -c[0].count, c[0].name))
    raise OutOfBoundsError(
        f"{req.mode} {coords} in {req.crs} lies outside every indexed scene ({len(store.scenes())} scenes)",
        _swap_hint(store, req, crs) or "check --crs, or give the raster it was drawn on with --raster",
    )


def _scenes_holding(store: IndexStore, is_box: bool, coords: list[float], crs: Any, *,
                    strict: bool) -> list[tuple[Scene, Stretch]]:
    """The stored scenes a box (xmin ymin xmax ymax) or point (x y) in ``crs`` lands on.

    ``strict``: an InputError other than out-of-bounds (e.g. a NaN) is raised, not skipped.
    """
    from ..raster import geometry

    out: list[tuple[Scene, Stretch]] = []
    for row in store.scenes():
        got = store.scene(row["scene_id"])
        if got is None:
            continue
        scene = got[0]
        try:
            if is_box:
                geometry.box_to_pixel_box(scene, tuple(coords), crs)  # type: ignore[arg-type]
            else:
                _point_pixel(scene, coords[0], coords[1], crs)
        except OutOfBoundsError:
            continue
        except InputError:
            if strict:
                raise
            continue
        except Exception:  # noqa: BLE001 - a scene whose CRS cannot take these coordinates
            log.debug("scene %s cannot take %s", scene.name, coords, exc_info=True)
            continue
        out.append(got)
    return out


def _swap_hint(store: IndexStore, req: SearchRequest, crs: Any) -> str | None:
    """A hint to swap the coordinates when ``crs`` is geographic and lat/lon order would land on a scene."""
    if not crs.is_geographic:
        return None
    c = list(req.box if req.box is not None else req.point or [])
    swapped = [c[1], c[0], c[3], c[2]] if req.box is not None else [c[1], c[0]]
    if req.box is not None and not (swapped[0] < swapped[2] and swapped[1] < swapped[3]):
        return None
    try:
        hit = _scenes_holding(store, req.box is not None, swapped, crs, strict=False)
    except Exception:  # noqa: BLE001 - a hint never fails the error it decorates
        return None
    if not hit:
        return None
    what = "box" if req.box is not None else "point"
    nums = " ".join(f"{v:g}" for v in swapped)
    return (f"x comes first: longitude, then latitude; swapped, the {what} {nums} lies in scene {hit[0][0].name} "
            "- did you give lat lon?")


def _point_pixel(scene: Scene, x: float, y: float, crs: Any) -> tuple[float, float]:
    from ..raster import geometry

    cols, rows = geometry.to_pixels(scene, [x], [y], crs)
    col, row = float(np.asarray(cols).ravel()[0]), float(np.asarray(rows).ravel()[0])
    if not (math.isfinite(col) and math.isfinite(row)):
        raise OutOfBoundsError(f"point ({x}, {y}) cannot be placed on scene {scene.name}",
                               "check the point's CRS")
    if not (0 <= col <= scene.width and 0 <= row <= scene.height):
        raise OutOfBoundsError(
            f"point ({x}, {y}) falls at pixel ({col:.1f}, {row:.1f}), outside scene {scene.name} "
            f"(0..{scene.width} x 0..{scene.height})", "click inside the raster or check the CRS")
    return col, row


def build_query(store: IndexStore, req: SearchRequest) -> Query:
    """Validate ``req`` against the index and build the query (reads pixels, no model)."""
    from ..raster import geometry
    from ..raster.tiling import native_tile_size, read_tile

    latlon = (float(req.latlon[0]), float(req.latlon[1])) if req.latlon is not None else None
    if req.mode == "text":
        return Query("text", "text_query", text=req.text, latlon=latlon, info={"text": req.text})
    if req.mode == "image":
        assert req.image is not None
        return image_query(read_image_file(req.image), latlon=latlon, text=req.text)

    tiling = index_tiling(store)
    scene, stretch = resolve_scene(store, req, tiling)
    crs = geometry.parse_crs(req.crs)
    size = native_tile_size(scene, tiling)
    if req.box is not None:
        pixel_box = geometry.box_to_pixel_box(scene, tuple(req.box), crs)  # type: ignore[arg-type]
        window = geometry.context_window(scene, pixel_box, size)
        image, _ = read_tile(scene, window, stretch, out_size=tiling.tile_size)
        image_box = geometry.pixel_box_to_image_box(pixel_box, window, tiling.tile_size)
        exclude = geometry.image_box_to_geometry(scene, window, tiling.tile_size, image_box, "EPSG:4326")
        res = geometry.ground_resolution(scene)
        ground = math.sqrt((pixel_box[2] - pixel_box[0]) * (pixel_box[3] - pixel_box[1])) * res
        return Query("box", "region_query", image=image, bbox=tuple(image_box), latlon=latlon,  # type: ignore[arg-type]
                     exclude_wgs84=exclude if req.exclude_overlapping else None, text=req.text,
                     scene_id=scene.scene_id, window=tuple(window),  # type: ignore[arg-type]
                     info={"box": req.box, "crs": req.crs, "scene": scene.name, "window": list(window),
                           "image_box": list(image_box)}, ground_size_m=ground)
    assert req.point is not None
    col, row = _point_pixel(scene, req.point[0], req.point[1], crs)
    window = geometry.context_window(scene, (col - 0.5, row - 0.5, col + 0.5, row + 0.5), size)
    image, _ = read_tile(scene, window, stretch, out_size=tiling.tile_size)
    if latlon is None:
        latlon = tuple(float(v) for v in geometry.pixel_to_latlon(scene, col, row))  # type: ignore[assignment]
    exclude = geometry.window_to_geometry(scene, window, "EPSG:4326")
    return Query("point", "point_query", image=image, latlon=latlon, text=req.text,
                 exclude_wgs84=exclude if req.exclude_overlapping else None,
                 scene_id=scene.scene_id, window=tuple(window),  # type: ignore[arg-type]
                 info={"point": req.point, "crs": req.crs, "scene": scene.name, "window": list(window),
                       "latlon": list(latlon) if latlon else None})


def image_query(image: np.ndarray, *, latlon: tuple[float, float] | None = None, text: str | None = None) -> Query:
    """A query by an image, embedded like an indexed tile (instruction ``tile``); with text: ``image_query``."""
    return Query("image", "tile" if text is None else "image_query", image=image, latlon=latlon, text=text,
                 info={"image": list(image.shape)})


def read_image_file(path: str) -> np.ndarray:
    """An image file (PNG, JPEG, or a raster's first three bands) as (H, W, 3) uint8."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise NotFoundError(f"image {path!r} does not exist", "give the path of a PNG, JPEG or GeoTIFF file")
    try:
        from PIL import Image

        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception:  # noqa: BLE001 - not a picture PIL reads: try it as a raster
        pass
    try:
        from ..raster.scan import open_scene
        from ..raster.stretch import compute_stretch
        from ..raster.tiling import read_tile

        scene = open_scene(str(p))
        side = max(scene.width, scene.height)
        image, _ = read_tile(scene, (0, 0, side, side), compute_stretch(scene), out_size=min(side, 1024))
        return image
    except Exception as e:  # noqa: BLE001
        raise InputError(f"image {path!r} cannot be read as an image or raster: {e}",
                         "give a PNG, JPEG or GeoTIFF file") from e
