"""Region search: latency over an index with regions, query-time rerank, index size per tile.

``--part search``: a real IndexStore (SQLite + vectors.hnsw + regions.hnsw) of --tiles
synthetic tiles x --per-tile regions (synthetic vectors drawn like bench_hnsw's
clustered low-rank law), then single-query region searches timed end to end the way
``geovec search --level region`` runs them after the model (region hnswlib knn, SQLite
rows, tile records, per-tile NMS, GeoJSON polygons of the k boxes): p50/p99, plus the
bare hnswlib knn for reference, and the index size per tile. Two passes of different
queries: the first right after opening (SQLite pages where the OS left them: after a build
and the graphs' load, mostly on disk), the second after ``index.prewarm`` (what ``geovec
serve`` runs in the background when it opens an index). ``--index DIR`` keeps the built
index and reuses it.

``--part rerank``: a real index of sample rasters made with the tiny random model, then
``--level region --rerank 50`` text queries (candidates of the top 50 tiles embedded at
query time with ``encode_regions``), and the size per tile of that index without and
with stored regions.

    .venv/bin/python benchmarks/bench_regions.py [--part search rerank] [--tiles 100000] [--per-tile 16]
        [--dim 1536] [--queries 200] [--k 10] [--index DIR]

"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402
from bench_hnsw import Distribution  # noqa: E402

from geovec.backend.index import prewarm  # noqa: E402
from geovec.backend.index.store import IndexStore  # noqa: E402
from geovec.backend.regions import RegionSpec, grid_boxes  # noqa: E402
from geovec.backend.types import Scene, Stretch, TileRecord  # noqa: E402

TILE_PX = 256
DEG = 1e-4  # synthetic scene: EPSG:4326, 1e-4 degree pixels


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _scene(cols: int, rows: int) -> Scene:
    from pyproj import CRS

    return Scene(scene_id="bench", name="bench", sources=("/bench.tif",), bands=(), rgb=(1, 2, 3),
                 crs_wkt=CRS.from_epsg(4326).to_wkt(), transform=(DEG, 0.0, -80.0, 0.0, -DEG, 35.0),
                 width=cols * TILE_PX, height=rows * TILE_PX, dtype="uint8", nodata=None, fingerprint="x")


def _record(scene: Scene, i: int, cols: int) -> TileRecord:
    c, r = (i % cols) * TILE_PX, (i // cols) * TILE_PX
    x0, y1 = -80.0 + c * DEG, 35.0 - r * DEG
    x1, y0 = x0 + TILE_PX * DEG, y1 - TILE_PX * DEG
    fp = f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
    return TileRecord(tile_id=f"t{i:07d}", scene_id=scene.scene_id, sources=scene.sources,
                      window=(c, r, TILE_PX, TILE_PX), crs_wkt=scene.crs_wkt, bounds=(x0, y0, x1, y1),
                      footprint_wgs84=fp, center_lat=(y0 + y1) / 2, center_lon=(x0 + x1) / 2, gsd=10.0,
                      valid_fraction=1.0)


def build(path: Path, dist: Distribution, tiles: int, per_tile: int, grid: int) -> IndexStore:
    """A real index of synthetic tiles, each with ``per_tile`` region vectors (built once, reused)."""
    if (path / "index.json").exists():
        store = IndexStore.open(path)
        if store.count == tiles and store.region_count == tiles * per_tile:
            print(f"reusing {path}: {store.count} tiles, {store.region_count} regions")
            return store
        store.close()
        shutil.rmtree(path)
    cols = int(np.ceil(np.sqrt(tiles)))
    scene = _scene(cols, int(np.ceil(tiles / cols)))
    store = IndexStore.create(path, dim=dist.dim, preset="bench", checkpoint="synthetic", tiling={"tile_size": TILE_PX})
    store.upsert_scene(scene, Stretch((0, 0, 0), (255, 255, 255), "identity"))
    store.enable_regions(RegionSpec.parse(f"grid={grid};overlap=0.25").to_text())
    boxes = np.asarray(grid_boxes(TILE_PX, RegionSpec.parse(f"grid={grid};overlap=0.25")))[:per_tile]
    t0 = time.perf_counter()
    step = 2000
    for s in range(0, tiles, step):
        n = min(step, tiles - s)
        recs = [_record(scene, i, cols) for i in range(s, s + n)]
        tv = dist.sample(n, stream=1 + s)
        rv = dist.sample(n * per_tile, stream=10_000_000 + s)
        store.add(recs, tv, [(boxes, rv[j * per_tile : (j + 1) * per_tile]) for j in range(n)])
        if (s // step) % 10 == 0:
            print(f"  built {s + n} tiles ({time.perf_counter() - t0:.0f} s)", flush=True)
    store.complete_scene(scene.scene_id)
    store.close()
    print(f"built in {time.perf_counter() - t0:.0f} s")
    return IndexStore.open(path)


def part_search(args: argparse.Namespace, tmp: Path) -> None:
    from geovec.backend.schemas import SearchRequest
    from geovec.backend.search import candidates, features
    from geovec.backend.search.query import Query

    dist = Distribution("clustered-lowrank", args.dim, intrinsic=32, clusters=100, spread=0.5, noise=0.1, seed=0)
    print(f"vectors: {dist.describe()}")
    grid = int(np.ceil(np.sqrt(args.per_tile)))
    path = Path(args.index) if args.index else tmp / "idx"
    store = build(path, dist, args.tiles, args.per_tile, grid)
    size = _du(path)
    print(f"index: {store.count} tiles x {args.per_tile} regions, dim {store.dim}, M {store.meta['M']}, "
          f"ef_search {store.meta['ef_search']}; {size / 2**30:.2f} GiB on disk = {size / store.count / 1024:.1f} "
          f"KiB per tile with its regions")
    queries = dist.sample(args.queries * 2, stream=999_999_999)
    req = SearchRequest(index=str(path), text="q", level="region", k=args.k)
    query = Query("text", "text_query", text="q")
    scenes = features.Scenes(store)

    def timed(qs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lat, cpu, knn = [], [], []
        for q in qs:
            c0 = time.process_time()
            t0 = time.perf_counter()
            ranked = candidates.rank_regions(store, None, query, req, None, q, q, None, scenes, TILE_PX, False, 0)  # type: ignore[arg-type]
            feats = features.region_features(scenes, ranked, TILE_PX, "EPSG:4326")
            lat.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert len(feats) == args.k
            half = store.region_index.half
            assert half is not None
            t1 = time.perf_counter()
            half.index.knn_query(q.reshape(1, -1), k=args.k * 4 + 16)
            knn.append(time.perf_counter() - t1)
        return np.array(lat) * 1000, np.array(cpu) * 1000, np.array(knn) * 1000

    def report(what: str, r: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        ms, cpu, knn = r
        print(f"region search, {what} (level=region, k={args.k}, {len(ms)} queries): p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms, mean {ms.mean():.2f} ms wall; CPU time per query "
              f"p50 {np.percentile(cpu, 50):.2f} ms; bare hnswlib knn (k={args.k * 4 + 16}) p50 "
              f"{np.percentile(knn, 50):.2f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # first searches after opening: the SQLite pages they read are wherever the OS left them (after a build
    # and the graphs' load, mostly on disk); then what the server does when it opens an index (index.prewarm)
    report("first queries after opening", timed(queries[: args.queries]))
    warmed = prewarm.prewarm(path / "meta.sqlite")
    print(f"prewarm (what geovec serve runs in the background on opening an index): {warmed.tiles} tile records and "
          f"{warmed.regions} region boxes read in {warmed.seconds:.1f} s")
    report("after the prewarm, other queries", timed(queries[args.queries :]))
    store.close()


def part_rerank(args: argparse.Namespace, tmp: Path) -> None:
    from geovec.backend.demo import write_scene
    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model
    from geovec.backend.schemas import SearchRequest
    from geovec.backend.search import run as rs
    from geovec.backend.search.query import build_query
    from geovec.backend.types import TilingParams

    emb = load_embedder(str(write_tiny_model(tmp / "tiny")), device="cpu")
    folder = tmp / "rasters"
    for i, kind in enumerate(("water", "forest", "urban")):
        write_scene(folder / f"{kind}.tif", kind, size=512, seed=i, origin=(400000.0 + 10000 * i, 3300000.0))
    params = TilingParams(tile_size=64)
    plain, withr = tmp / "plain", tmp / "withr"
    s = index_folder(folder, plain, emb, params=params)
    t0 = time.perf_counter()
    s2 = index_folder(folder, withr, emb, params=params, regions="")
    t_regions = time.perf_counter() - t0
    print(f"model: tiny random Qwen2-VL (dim {emb.dim}, image {emb.preset.image_size} px); data: 3 synthetic "
          f"512 px scenes, 64 px tiles -> {s.tiles} tiles")
    print(f"index size per tile: {_du(plain) / s.tiles / 1024:.1f} KiB without regions, "
          f"{_du(withr) / s2.tiles / 1024:.1f} KiB with {s2.regions // s2.tiles} regions per tile "
          f"(default spec); indexing with regions took {t_regions:.1f} s")
    from geovec.backend.index.store import IndexStore

    with IndexStore.open(plain) as store:
        times = []
        for i in range(args.rerank_repeat + 1):
            req = SearchRequest(index=str(plain), text="storage tanks", level="region", rerank=args.rerank, k=10)
            query = build_query(store, req)
            t0 = time.perf_counter()
            resp = rs.run(store, emb, query, req)
            if i:
                times.append(time.perf_counter() - t0)
            assert resp.features
    spec = RegionSpec.parse(None)
    ms = np.array(times) * 1000
    print(f"query-time rerank of {args.rerank} tiles x {spec.grid_count()} candidates ({args.rerank * spec.grid_count()} "
          f"region prompts, tiny model, CPU, torch threads {__import__('torch').get_num_threads()}): p50 "
          f"{np.percentile(ms, 50):.0f} ms over {len(ms)} queries ({np.percentile(ms, 50) / args.rerank:.1f} ms per tile)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", default=["search", "rerank"], choices=["search", "rerank"])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--per-tile", type=int, default=16)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rerank", type=int, default=50)
    ap.add_argument("--rerank-repeat", type=int, default=3)
    ap.add_argument("--index", help="build the synthetic index here and reuse it on later runs")
    args = ap.parse_args()
    print(machine("cpu"))
    print(f"hnswlib threads for building: {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="geovec-bench-regions-"))
    try:
        if "search" in args.part:
            part_search(args, tmp)
        if "rerank" in args.part:
            part_rerank(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
