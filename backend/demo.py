"""``make demo``: get a model, index a folder (or a sample one), run a text and a box query.

``python -m geovec.backend.demo [--dir FOLDER] [--model PRESET_OR_PATH]``. Without
``--dir`` a small sample folder of synthetic GeoTIFFs (water-, forest- and
urban-like patterns in real CRSs: UTM, CONUS Albers equal-area, NC State Plane
in US survey feet, one of them 16-bit) is written and indexed. When the default
model cannot be reached (offline, not in the local cache) the tiny random one is
used, with a loud warning; any other model that does not load (a typo, a wrong
path) is an error.

:func:`write_sample_folder` and :func:`write_geotiff` are also used by tests and
benchmarks to write synthetic rasters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: name -> (pattern, CRS, origin x, origin y, pixel size in CRS units, dtype)
SAMPLES: dict[str, tuple[str, str, float, float, float, str]] = {
    "lake_utm17n": ("water", "EPSG:32617", 400000.0, 3300000.0, 10.0, "uint8"),
    "forest_albers": ("forest", "EPSG:5070", 1500000.0, 1600000.0, 10.0, "uint16"),
    "town_ncsp_ftUS": ("urban", "EPSG:2264", 2000000.0, 700000.0, 30.0, "uint8"),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Blocky-then-smoothed noise in [0, 1] (no scipy needed)."""
    gh, gw = max(2, h // scale + 2), max(2, w // scale + 2)
    coarse = rng.random((gh, gw))
    ys = np.linspace(0, gh - 1.001, h)
    xs = np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = coarse[np.ix_(y0, x0)]
    b = coarse[np.ix_(y0, x0 + 1)]
    c = coarse[np.ix_(y0 + 1, x0)]
    d = coarse[np.ix_(y0 + 1, x0 + 1)]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def pattern(kind: str, h: int, w: int, *, seed: int = 0) -> np.ndarray:
    """A (3, h, w) float RGB pattern in [0, 1]: ``water``, ``forest``, ``urban`` or ``mixed``."""
    rng = np.random.default_rng(seed)
    n = _smooth_noise(rng, h, w, 16)
    fine = rng.random((h, w))
    if kind == "water":
        rgb = np.stack([0.05 + 0.05 * n, 0.15 + 0.1 * n, 0.35 + 0.15 * n + 0.03 * fine])
    elif kind == "forest":
        canopy = 0.6 * _smooth_noise(rng, h, w, 4) + 0.4 * fine
        rgb = np.stack([0.08 + 0.1 * canopy, 0.25 + 0.3 * canopy, 0.06 + 0.08 * canopy])
    elif kind == "urban":
        yy, xx = np.mgrid[0:h, 0:w]
        streets = ((yy % 24) < 3) | ((xx % 24) < 3)
        roofs = _smooth_noise(rng, h, w, 6) > 0.5
        base = 0.45 + 0.1 * fine
        rgb = np.stack([base, base, base + 0.02])
        rgb[:, roofs] = np.array([0.7, 0.35, 0.3])[:, None] + 0.1 * fine[roofs]
        rgb[:, streets] = 0.2
    elif kind == "mixed":
        left = pattern("water", h, w, seed=seed)
        right = pattern("forest", h, w, seed=seed + 1)
        rgb = np.where(np.arange(w)[None, None, :] < w // 2, left, right)
    else:
        raise ValueError(f"unknown pattern {kind!r}: water, forest, urban or mixed")
    return np.clip(rgb, 0.0, 1.0)


def write_geotiff(path: str | Path, data: np.ndarray, *, crs: str | None = "EPSG:32617",
                  origin: tuple[float, float] = (400000.0, 3300000.0), res: float = 10.0,
                  nodata: float | None = None, **profile: Any) -> Path:
    """Write ``data`` (bands, h, w) as a tiled GeoTIFF; ``crs=None`` writes no georeferencing."""
    import rasterio
    from rasterio.transform import from_origin

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count, h, w = data.shape
    prof: dict[str, Any] = {"driver": "GTiff", "width": w, "height": h, "count": count, "dtype": data.dtype.name}
    if crs is not None:
        prof.update(crs=crs, transform=from_origin(origin[0], origin[1], res, res))
    if nodata is not None:
        prof["nodata"] = nodata
    if w >= 16 and h >= 16 and w % 16 == 0 and h % 16 == 0:
        prof.update(tiled=True, blockxsize=min(256, w), blockysize=min(256, h))
    prof.update(profile)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for crs=None on purpose
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
    return path


def write_scene(path: str | Path, kind: str, *, size: int = 256, crs: str = "EPSG:32617",
                origin: tuple[float, float] = (400000.0, 3300000.0), res: float = 10.0,
                dtype: str = "uint8", seed: int = 0) -> Path:
    """A synthetic RGB scene of ``kind`` (see :func:`pattern`), 8-bit or 16-bit."""
    rgb = pattern(kind, size, size, seed=seed)
    scale = 255 if dtype == "uint8" else 4000  # 16-bit: reflectance-like range, needs a stretch
    return write_geotiff(path, (rgb * scale).astype(dtype), crs=crs, origin=origin, res=res)


def write_sample_folder(folder: str | Path, *, size: int = 256) -> Path:
    """Write the demo's sample scenes (see :data:`SAMPLES`) into ``folder``."""
    folder = Path(folder)
    for i, (name, (kind, crs, x, y, res, dtype)) in enumerate(SAMPLES.items()):
        write_scene(folder / f"{name}.tif", kind, size=size, crs=crs, origin=(x, y), res=res, dtype=dtype, seed=i)
    return folder


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("geovec"))


DEFAULT_MODEL = "vlm2vec-qwen2vl-2b"


def get_model(spec: str) -> tuple[Any, bool]:
    """(embedder, is_tiny): ``spec`` loaded; the tiny model (loud warning) only for ``tiny``
    or when the default model is unreachable. Other failures raise (a typo is never hidden)."""
    from .errors import ModelUnavailableError
    from .service import load_model

    if spec != "tiny":
        try:
            return load_model(spec), False
        except ModelUnavailableError as e:
            if spec != DEFAULT_MODEL:
                raise
            reason = str(e)
    else:
        reason = "the tiny model was asked for"
    from .model.tiny import write_tiny_model

    tiny = _cache_dir() / "tiny-model"
    if not (tiny / "geovec.json").exists():
        write_tiny_model(tiny)
    bar = "!" * 78
    print(f"\n{bar}\n!!  WARNING: using the TINY RANDOM model: its hits are MEANINGLESS.\n"
          f"!!  Why: {reason}\n"
          f"!!  For real results: make demo MODEL=/path/to/local/vlm2vec-qwen2vl-2b (or be online).\n{bar}\n",
          file=sys.stderr)
    return load_model(str(tiny)), True


def _print_hits(title: str, resp: Any) -> None:
    print(f"\n== {title}: {len(resp.features)} hit(s) in {resp.took_ms:.0f} ms")
    for f in resp.features:
        p = f.properties
        print(f"  {p['rank']:>2}  score {p['score']:+.4f}  {Path(p['source']).name:<28} window {tuple(p['window'])}"
              f"  centre {p['center_lat']:.5f}, {p['center_lon']:.5f}")


def main(argv: list[str] | None = None) -> int:
    from .errors import GeoVecError
    from .raster import geometry
    from .schemas import IndexRequest, SearchRequest, TilingOptions
    from .service import open_index, run_index, run_search

    ap = argparse.ArgumentParser(prog="geovec-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="folder of GeoTIFFs (default: a sample folder written for you)")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--index", help="index directory (default: in the user cache dir)")
    ap.add_argument("--tile-size", type=int, default=None)
    args = ap.parse_args(argv)
    import logging

    import transformers

    transformers.logging.set_verbosity_error()  # the demo prints its own story; no library chatter
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        folder = Path(args.dir).expanduser() if args.dir else write_sample_folder(_cache_dir() / "sample-rasters")
        print(f"rasters: {folder}")
        embedder, tiny = get_model(args.model)
        index = Path(args.index) if args.index else _cache_dir() / ("demo-index-tiny" if tiny else "demo-index")
        tile = args.tile_size or (64 if not args.dir else 256)
        summary = run_index(IndexRequest(folder=str(folder), index=str(index), tiling=TilingOptions(tile_size=tile)),
                            embedder)
        print(f"index: {index}: {summary.scenes} scene(s) indexed, {summary.scenes_skipped_unchanged} unchanged, "
              f"{summary.tiles} tile(s) embedded, {summary.tiles_skipped} skipped, {len(summary.errors)} error(s)")
        for e in summary.errors:
            print(f"  error: {e.path}: {e.error}")
        _print_hits('text "water"', run_search(SearchRequest(index=str(index), text="water", k=5), embedder))
        store = open_index(index)
        try:
            rows = store.scenes()
            scene = store.scene(rows[0]["scene_id"])[0] if rows else None  # type: ignore[index]
        finally:
            store.close()
        if scene is not None:
            cw, ch = scene.width // 2, scene.height // 2
            half = max(4, min(scene.width, scene.height) // 8)
            poly = geometry.window_to_geometry(scene, (cw - half, ch - half, 2 * half, 2 * half), "EPSG:4326")
            box = [round(v, 7) for v in poly.bounds]
            req = SearchRequest(index=str(index), box=box, crs="EPSG:4326", k=5)
            _print_hits(f"box {box} (EPSG:4326) on {scene.name}", run_search(req, embedder))
        if tiny:
            print("\n(reminder: tiny random model, the hits above are meaningless)", file=sys.stderr)
        return 0
    except GeoVecError as e:
        print(f"geovec demo: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
