"""Find rasters in a folder and group them into scenes.

Rules (also in docs/DATA.md, "How rasters become tiles"):

* A folder is scanned recursively for ``.tif``, ``.tiff`` and ``.vrt`` (case-insensitive;
  hidden files and folders are ignored).
* One-band files whose names share a stem once a band suffix is removed
  (``_10``, ``_B2``, ``.B3``, ``-band4``, ``_B8A``...) **and** that lie on an identical
  grid (CRS, transform, width, height) form one scene, stacked in band-number order.
  Everything else is a scene of its own. Explicit ``groups`` (name -> files) win.
* The three bands fed to the model as R, G, B (:func:`default_rgb`): the files' colour
  interpretation (red/green/blue) when present; for a stack with band numbers, the
  sensor's red/green/blue (Landsat 8/9 and Sentinel-2: 4, 3, 2; otherwise 3, 2, 1 or
  30, 20, 10 when present); else by band count: 1 -> (1, 1, 1), 2 -> (1, 1, 1),
  3-5 -> (1, 2, 3), 6 or more (Landsat TM/ETM+-like stacks of 1,2,3,4,5,7) -> (3, 2, 1).
  ``bands=`` always overrides.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeoVecError, InputError, NotFoundError, RasterError
from ..types import BandRef, Scene

log = logging.getLogger(__name__)

EXTENSIONS = (".tif", ".tiff", ".vrt")
#: ``<stem><sep>[b|band]<number>[a]`` at the end of a file name (without extension).
BAND_SUFFIX = re.compile(r"^(?P<stem>.+?)[_.\-](?:b|band)?(?P<num>\d{1,3})(?P<sub>a?)$", re.IGNORECASE)
#: Names of sensors whose blue/green/red are bands 2/3/4 (Landsat 8-9 OLI, Sentinel-2 MSI).
OLI_MSI = re.compile(r"(^|[_/])(LC0?[89]|LO0?[89]|S2[ABC]?|T\d{2}[A-Z]{3})([_\-]|$)", re.IGNORECASE)


@dataclass
class ScanResult:
    """Scenes found in a folder, and the files that could not be used (path, reason)."""

    scenes: list[Scene] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: folders that could not be listed: the scenes indexed under them must be kept
    unreadable: list[str] = field(default_factory=list)
    #: resolved paths of every raster file the walk found (usable or not)
    seen: set[str] = field(default_factory=set)


@dataclass
class _FileInfo:
    path: str
    count: int
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    dtypes: tuple[str, ...]
    nodata: float | None
    colorinterp: tuple[str, ...]
    size: int
    mtime_ns: int

    @property
    def grid(self) -> tuple[Any, ...]:
        return (self.crs_wkt, tuple(round(v, 9) for v in self.transform), self.width, self.height)


def _read_info(path: str) -> _FileInfo:
    """Open one file's header (no pixel reads). Raises RasterError / NotFoundError."""
    import rasterio
    from rasterio.errors import RasterioIOError

    from ..paths import check_read, shown

    p = Path(path)
    check_read(p, "raster")  # a server request or job: the file and a VRT's sources under the allowed folders
    if not p.exists():
        raise NotFoundError(f"raster {path!r} does not exist", "check the path")
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError as e:
        raise RasterError(f"file name {shown(str(p))!r} is not valid UTF-8, which GDAL cannot open",
                          "rename the file (e.g. with `convmv` or your file manager)") from e  # a server job confined to allowed folders: the file and a VRT's sources
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: reported below as an error
            with rasterio.open(p) as src:
                crs = src.crs
                st = p.stat()
                info = _FileInfo(
                    path=str(p.resolve()), count=src.count, crs_wkt=crs.to_wkt() if crs else "",
                    transform=tuple(src.transform)[:6], width=src.width, height=src.height,  # type: ignore[arg-type]
                    dtypes=tuple(src.dtypes), nodata=src.nodata,
                    colorinterp=tuple(ci.name for ci in src.colorinterp), size=st.st_size, mtime_ns=st.st_mtime_ns,
                )
    except RasterioIOError as e:
        raise RasterError(f"{p.name} is not a readable raster ({_first_line(e)})",
                          "give a GeoTIFF or VRT that GDAL can open, or remove it from the folder") from e
    except Exception as e:  # noqa: BLE001 - any GDAL failure is a bad raster, never a crash
        raise RasterError(f"{p.name} cannot be opened ({type(e).__name__}: {_first_line(e)})",
                          "give a GeoTIFF or VRT that GDAL can open") from e
    if not info.crs_wkt:
        raise RasterError(f"{p.name} has no CRS (it is not georeferenced)",
                          "assign one, e.g. `gdal_edit.py -a_srs EPSG:32617 FILE` or QGIS' Assign Projection")
    if info.count < 1 or info.width < 1 or info.height < 1:
        raise RasterError(f"{p.name} has no pixels ({info.count} bands, {info.width}x{info.height})",
                          "give a raster with at least one band")
    return info


def _first_line(e: BaseException) -> str:
    from .reasons import gdal_reason

    return gdal_reason(e)


def _scene_id(paths: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(sorted(paths)).encode()).hexdigest()[:16]


def _fingerprint(infos: Sequence[_FileInfo]) -> str:
    text = "\n".join(f"{i.path}|{i.size}|{i.mtime_ns}" for i in sorted(infos, key=lambda i: i.path))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _band_number(path: str) -> tuple[str, int, str] | None:
    m = BAND_SUFFIX.match(Path(path).stem)
    if not m:
        return None
    return m.group("stem"), int(m.group("num")), m.group("sub").lower()


def default_rgb(count: int, colorinterp: Sequence[str] = (), band_numbers: Sequence[int] = (),
                name: str = "") -> tuple[int, int, int]:
    """The 1-based scene bands fed to the model as R, G, B (see the module docstring)."""
    ci = [c.lower() for c in colorinterp]
    if all(c in ci for c in ("red", "green", "blue")):
        return (ci.index("red") + 1, ci.index("green") + 1, ci.index("blue") + 1)
    if band_numbers:
        want = [(4, 3, 2)] if OLI_MSI.search(name) else []
        want += [(3, 2, 1), (30, 20, 10)]
        for triple in want:
            if all(b in band_numbers for b in triple):
                return tuple(list(band_numbers).index(b) + 1 for b in triple)  # type: ignore[return-value]
    if count <= 2:
        return (1, 1, 1)
    if count <= 5:
        return (1, 2, 3)
    return (3, 2, 1)


def check_bands(bands: Sequence[int] | None, count: int, name: str) -> tuple[int, int, int] | None:
    """``bands`` as an (R, G, B) tuple of 1-based band numbers of a ``count``-band scene (None stays None)."""
    if bands is None:
        return None
    b = tuple(int(v) for v in bands)
    if len(b) != 3 or not all(1 <= v <= count for v in b):
        raise InputError(f"bands {list(bands)} do not fit scene {name} with {count} band(s)",
                         f"give three band numbers between 1 and {count} (R G B)")
    return b  # type: ignore[return-value]


def _dtype(infos: Sequence[_FileInfo]) -> str:
    return str(np.result_type(*[d for i in infos for d in i.dtypes]))


def _make_scene(infos: Sequence[_FileInfo], *, name: str, stacked: bool, bands: Sequence[int] | None,
                band_numbers: Sequence[int] = ()) -> Scene:
    first = infos[0]
    if stacked:
        refs = tuple(BandRef(i.path, 1) for i in infos)
        ci = tuple(i.colorinterp[0] for i in infos)
    else:
        refs = tuple(BandRef(first.path, b) for b in range(1, first.count + 1))
        ci = first.colorinterp
    rgb = check_bands(bands, len(refs), name) or default_rgb(len(refs), ci, band_numbers, name)
    paths = [i.path for i in infos]
    return Scene(
        scene_id=_scene_id(paths), name=name, sources=tuple(paths), bands=refs, rgb=rgb,
        crs_wkt=first.crs_wkt, transform=first.transform, width=first.width, height=first.height,
        dtype=_dtype(infos), nodata=first.nodata, fingerprint=_fingerprint(infos),
    )


def _stack(infos: Sequence[_FileInfo], name: str, bands: Sequence[int] | None) -> Scene:
    """A scene from one-band files on one grid, in band-number order when the names carry one."""
    for i in infos:
        if i.count != 1:
            raise RasterError(f"{Path(i.path).name} has {i.count} bands; a stack needs one-band files",
                              "list only one-band files in a group, or index the multi-band file on its own")
    grids = {i.grid for i in infos}
    if len(grids) != 1:
        names = ", ".join(Path(i.path).name for i in infos)
        raise RasterError(f"files {names} are not on one grid (CRS, transform and size must be identical)",
                          "resample them to one grid (gdalwarp) or index them as separate scenes")
    numbered = [_band_number(i.path) for i in infos]
    order = list(infos)
    numbers: list[int] = []
    if all(numbered):
        order = [i for _, i in sorted(zip(numbered, infos, strict=True), key=lambda t: (t[0][1], t[0][2]))]  # type: ignore[index]
        numbers = sorted(n[1] for n in numbered)  # type: ignore[index]
    return _make_scene(order, name=name, stacked=True, bands=bands, band_numbers=numbers)


def open_scene(paths: str | Path | Sequence[str | Path], *, bands: Sequence[int] | None = None,
               name: str | None = None) -> Scene:
    """One multi-band file, or several one-band files on one grid (a stack), as a :class:`Scene`.

    Raises:
        NotFoundError: a path does not exist.
        RasterError: not a raster, no CRS, or the files of a stack differ in grid.
        InputError: ``bands`` does not fit the scene.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise InputError("no raster given", "give one raster file or several one-band files")
    infos = [_read_info(str(p)) for p in items]
    if len(infos) == 1:
        return _make_scene(infos, name=name or Path(infos[0].path).stem, stacked=False, bands=bands)
    stem = _band_number(infos[0].path)
    return _stack(infos, name or (stem[0] if stem else Path(infos[0].path).stem), bands)


def find_rasters(folder: Path) -> list[Path]:
    """Every .tif/.tiff/.vrt under ``folder`` (recursive, sorted, hidden entries skipped)."""
    from .walk import walk_rasters

    return walk_rasters(folder).files


def _resolve_group(folder: Path, files: Sequence[str]) -> list[str]:
    out = []
    for f in files:
        p = Path(f).expanduser()
        p = p if p.is_absolute() else folder / p
        if not p.exists():
            raise NotFoundError(f"group file {f!r} does not exist (looked in {folder})",
                                "name files relative to the folder, or give absolute paths")
        out.append(str(p.resolve()))
    return out


def scan_folder(folder: str | Path, *, groups: dict[str, list[str]] | None = None,
                bands: tuple[int, int, int] | None = None) -> ScanResult:
    """Scan ``folder`` recursively and group its rasters into scenes (see the module docstring).

    Files that cannot be used are listed in ``errors`` with a reason; the scan goes on.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotFoundError(f"folder {str(folder)!r} does not exist or is not a folder",
                            "give a folder containing .tif/.tiff/.vrt rasters")
    root = root.resolve()
    result = ScanResult()
    claimed: set[str] = set()
    for gname, files in (groups or {}).items():
        try:
            paths = _resolve_group(root, files)
            scene = open_scene(paths, bands=bands, name=gname)
        except GeoVecError as e:
            result.errors.append((",".join(files), str(e)))
            continue
        claimed.update(scene.sources)
        result.scenes.append(scene)

    from .walk import walk_rasters

    walk = walk_rasters(root)
    result.errors.extend(walk.errors)
    result.unreadable.extend(str(d) for d in walk.unreadable)
    result.seen.update(str(p.resolve()) for p in walk.files)
    result.seen.update(claimed)
    _group_files([p for p in walk.files if str(p.resolve()) not in claimed], result, bands)
    result.scenes.sort(key=lambda s: s.sources[0])
    log.info("scanned %s: %d scene(s), %d error(s)", root, len(result.scenes), len(result.errors))
    return result


def _group_files(files: Sequence[Path], result: ScanResult, bands: tuple[int, int, int] | None) -> None:
    """Open ``files`` and group them into scenes (one-band files sharing a stem and a grid stack)."""
    infos: list[_FileInfo] = []
    for p in files:
        try:
            infos.append(_read_info(str(p)))
        except GeoVecError as e:
            result.errors.append((str(p), str(e)))

    by_stem: dict[tuple[str, str], list[_FileInfo]] = {}
    singles: list[_FileInfo] = []
    for info in infos:
        nb = _band_number(info.path)
        if info.count == 1 and nb is not None:
            by_stem.setdefault((str(Path(info.path).parent), nb[0]), []).append(info)
        else:
            singles.append(info)
    for (_, stem), members in by_stem.items():
        by_grid: dict[tuple[Any, ...], list[_FileInfo]] = {}
        for m in members:
            by_grid.setdefault(m.grid, []).append(m)
        for grid_members in by_grid.values():
            if len(grid_members) < 2:
                singles.extend(grid_members)
                continue
            try:
                result.scenes.append(_stack(grid_members, stem, bands))
            except GeoVecError as e:
                result.errors.append((",".join(m.path for m in grid_members), str(e)))
    for info in singles:
        try:
            result.scenes.append(_make_scene([info], name=Path(info.path).stem, stacked=False, bands=bands))
        except GeoVecError as e:
            result.errors.append((info.path, str(e)))


def scan_files(files: Sequence[str | Path], *, groups: dict[str, list[str]] | None = None,
               bands: tuple[int, int, int] | None = None) -> ScanResult:
    """Scenes of the raster files listed (grouped as :func:`scan_folder` groups a folder's files).

    Raises:
        NotFoundError: a listed path does not exist or is a folder (name folders on their own).
    """
    paths: list[Path] = []
    for f in files:
        p = Path(f).expanduser()
        if not p.is_file():
            what = "is a folder (give a folder on its own, or files)" if p.is_dir() else "does not exist"
            raise NotFoundError(f"raster {str(f)!r} {what}", "give raster files (.tif/.tiff/.vrt) or one folder")
        paths.append(p.resolve())
    result = ScanResult()
    claimed: set[str] = set()
    for gname, gfiles in (groups or {}).items():
        try:
            scene = open_scene([str(Path(g).expanduser().resolve()) for g in gfiles], bands=bands, name=gname)
        except GeoVecError as e:
            result.errors.append((",".join(gfiles), str(e)))
            continue
        claimed.update(scene.sources)
        result.scenes.append(scene)
    result.seen.update(str(p) for p in paths)
    result.seen.update(claimed)
    _group_files([p for p in dict.fromkeys(paths) if str(p) not in claimed], result, bands)
    result.scenes.sort(key=lambda s: s.sources[0])
    log.info("scanned %d file(s): %d scene(s), %d error(s)", len(paths), len(result.scenes), len(result.errors))
    return result
