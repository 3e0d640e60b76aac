"""Cut a scene into windows and read them: a grid sampler plus windowed (boundless) reads.

Like torchgeo's ``GridGeoSampler``: the sampler only chooses windows (in native
pixels), the reader only reads. A window is ``tile_size`` output pixels at the
target ``resolution`` (native when None); neighbours overlap by ``overlap`` of a
tile; the last row/column is aligned to the raster's edge so the whole raster is
covered; a raster smaller than one tile gets one window at (0, 0), read boundless.
Reads never load a whole file: each tile is a windowed read of its three bands,
resampled on read to ``out_size`` (average when shrinking, bilinear when growing).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, RasterError
from ..types import Scene, Stretch, TileRecord, TilingParams, Window
from . import geometry
from .scan import check_bands
from .stretch import apply_stretch, fill_mask

if TYPE_CHECKING:
    from .handles import DatasetCache


class GridSampler:
    """Windows of one scene on a regular grid (``size`` and ``stride`` in native pixels)."""

    def __init__(self, scene: Scene, params: TilingParams) -> None:
        if params.tile_size < 1:
            raise InputError(f"tile size {params.tile_size} must be >= 1 pixel", "use e.g. --tile-size 256")
        if not 0.0 <= params.overlap <= 0.9:
            raise InputError(f"overlap {params.overlap} is outside 0..0.9", "use e.g. --overlap 0.25")
        self.scene = scene
        self.params = params
        if params.resolution is None:
            self.native_size = int(params.tile_size)
        else:
            if not params.resolution > 0:
                raise InputError(f"resolution {params.resolution} must be > 0 metres/pixel", "omit it for native")
            gsd = geometry.ground_resolution(scene)
            self.native_size = max(1, round(params.tile_size * params.resolution / gsd))
        self.size = self.native_size
        self.stride = max(1, round(self.native_size * (1.0 - params.overlap)))
        self.cols = _offsets(scene.width, self.native_size, self.stride)
        self.rows = _offsets(scene.height, self.native_size, self.stride)

    def __len__(self) -> int:
        return len(self.cols) * len(self.rows)

    def __iter__(self) -> Iterator[Window]:
        for r in self.rows:
            for c in self.cols:
                yield (c, r, self.native_size, self.native_size)


def native_tile_size(scene: Scene, params: TilingParams) -> int:
    """Tile edge in native pixels (``tile_size`` output pixels at ``params.resolution``), as indexed."""
    return GridSampler(scene, params).native_size


def _offsets(extent: int, size: int, stride: int) -> list[int]:
    if extent <= size:
        return [0]
    offs = list(range(0, extent - size + 1, stride))
    if offs[-1] + size < extent:
        offs.append(extent - size)
    return offs


def tile_id(scene: Scene, window: Window | Sequence[int]) -> str:
    """Stable id of a window of a scene (same scene files + same window -> same id)."""
    col, row, w, h = (int(v) for v in window)
    return hashlib.sha1(f"{scene.scene_id}:{col},{row},{w},{h}".encode()).hexdigest()[:20]


def _read_bands(scene: Scene, rgb: Sequence[int], win: tuple[int, int, int, int],
                out_shape: tuple[int, int], scale: float,
                handles: DatasetCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the intersecting part ``win`` (col, row, w, h) of three bands into ``out_shape``.

    Returns (3, h, w) float32 values and an (h, w) validity mask (nodata, masks and
    non-finite values are invalid). With ``handles`` the files come from this thread's
    open datasets; without, each file is opened for this read only.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RWindow

    resampling = Resampling.nearest if math.isclose(scale, 1.0) else (
        Resampling.average if scale < 1 else Resampling.bilinear)
    rwin = RWindow(*win)
    data = np.empty((3, *out_shape), dtype=np.float32)
    valid = np.ones(out_shape, dtype=bool)
    by_path: dict[str, list[tuple[int, int]]] = {}
    for i, b in enumerate(rgb):
        ref = scene.bands[b - 1]
        by_path.setdefault(ref.path, []).append((i, ref.band))
    for path, items in by_path.items():
        bands = sorted({band for _, band in items})
        try:
            if handles is None:
                with rasterio.open(path) as src:
                    arr, masks = _read_window(src, bands, rwin, out_shape, resampling)
            else:
                arr, masks = _read_window(handles.get(path), bands, rwin, out_shape, resampling)
        except Exception as e:  # noqa: BLE001 - GDAL errors: one clear message, the run goes on
            if handles is not None:
                handles.discard(path)
            from .reasons import gdal_reason

            raise RasterError(f"cannot read window {win} of {path} ({gdal_reason(e)})",
                              "check that the file is complete and readable") from e
        for i, band in items:
            j = bands.index(band)
            data[i] = arr[j]
            valid &= masks[j] > 0
    valid &= np.isfinite(data).all(axis=0)
    return data, valid


def _read_window(src: Any, bands: list[int], rwin: Any, out_shape: tuple[int, int],
                 resampling: Any) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.enums import Resampling

    arr = src.read(bands, window=rwin, out_shape=(len(bands), *out_shape), resampling=resampling)
    masks = src.read_masks(bands, window=rwin, out_shape=(len(bands), *out_shape), resampling=Resampling.nearest)
    return arr, masks


def read_tile(scene: Scene, window: Window | Sequence[int], stretch: Stretch, *, out_size: int | None = None,
              bands: Sequence[int] | None = None, handles: DatasetCache | None = None) -> tuple[np.ndarray, float]:
    """Windowed, boundless read of the three model bands of ``window``, stretched to uint8.

    Args:
        scene: the scene.
        window: (col, row, width, height) in native pixels; may extend past the raster.
        stretch: the scene's stretch (:func:`~.stretch.compute_stretch`).
        out_size: resample to ``out_size`` x ``out_size`` (None: native size).
        bands: R, G, B scene band numbers (default ``scene.rgb``).
        handles: open datasets of the calling thread (:class:`~.handles.DatasetCache`);
            None opens the files for this read only.

    Returns:
        ((H, W, 3) uint8 image, fraction of valid pixels in the whole window).
    """
    col, row, w, h = (int(v) for v in window)
    if w < 1 or h < 1:
        raise InputError(f"window {tuple(window)} is empty", "give a window with width and height >= 1")
    rgb = check_bands(bands or None, scene.count, scene.name) or scene.rgb
    out_w = out_h = int(out_size) if out_size else 0
    if not out_size:
        out_w, out_h = w, h
    sx, sy = out_w / w, out_h / h
    data = np.zeros((3, out_h, out_w), dtype=np.float32)
    valid = np.zeros((out_h, out_w), dtype=bool)
    c0, r0 = max(col, 0), max(row, 0)
    c1, r1 = min(col + w, scene.width), min(row + h, scene.height)
    if c1 > c0 and r1 > r0:
        ox0, oy0 = round((c0 - col) * sx), round((r0 - row) * sy)
        ox1, oy1 = round((c1 - col) * sx), round((r1 - row) * sy)
        if ox1 > ox0 and oy1 > oy0:
            part, ok = _read_bands(scene, rgb, (c0, r0, c1 - c0, r1 - r0), (oy1 - oy0, ox1 - ox0), min(sx, sy),
                                   handles)
            fill = fill_mask(part, stretch)
            if fill is not None:  # fill the file does not tag: not imagery either
                ok &= ~fill
            data[:, oy0:oy1, ox0:ox1] = part
            valid[oy0:oy1, ox0:ox1] = ok
    image = apply_stretch(data, valid, stretch)
    return image, float(valid.mean())


def valid_mask(scene: Scene, box: Sequence[int], stretch: Stretch,
               handles: DatasetCache | None = None) -> np.ndarray:
    """(rows, cols) bool at native resolution: which pixels of the pixel box (col0, row0, col1, row1),
    clipped to the scene, are imagery (not nodata, masked, non-finite or the stretch's fill)."""
    c0, r0, c1, r1 = (int(v) for v in box)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, scene.width), min(r1, scene.height)
    if c1 <= c0 or r1 <= r0:
        return np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), dtype=bool)
    data, ok = _read_bands(scene, scene.rgb, (c0, r0, c1 - c0, r1 - r0), (r1 - r0, c1 - c0), 1.0, handles)
    fill = fill_mask(data, stretch)
    return ok if fill is None else ok & ~fill


def make_record(scene: Scene, window: Window | Sequence[int], *, valid_fraction: float,
                out_size: int | None) -> TileRecord:
    """The index record of one tile: sources, window, native bounds, WGS84 footprint, centre, GSD."""
    col, row, w, h = (int(v) for v in window)
    footprint = geometry.window_to_geometry(scene, (col, row, w, h), "EPSG:4326")
    lat, lon = geometry.pixel_to_latlon(scene, col + w / 2, row + h / 2)
    gsd = geometry.ground_resolution(scene) * (w / out_size if out_size else 1.0)
    return TileRecord(
        tile_id=tile_id(scene, (col, row, w, h)), scene_id=scene.scene_id, sources=scene.sources,
        window=(col, row, w, h), crs_wkt=scene.crs_wkt, bounds=geometry.window_bounds(scene, (col, row, w, h)),
        footprint_wgs84=footprint.wkt, center_lat=lat, center_lon=lon, gsd=float(gsd),
        valid_fraction=float(valid_fraction),
    )
