"""Search over HTTP (``geovec serve``) against the same search in process, on a 100k-vector index.

Both sides answer the same text queries with the same tiny model (its text
encode is *included* on both sides: the HTTP API takes queries, not vectors),
through the same ``service.run_search`` over the same index. The difference is
what the server adds: HTTP + JSON, auth/Host/body guard, validation, the thread
hop and the model lock. Target: overhead <= 5 ms at p50.

    .venv/bin/python benchmarks/bench_http.py [--n 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine  # noqa: E402

WORDS = ["water", "forest", "urban area", "river delta", "farmland", "bare soil", "coastline", "storage tanks",
         "airport", "dense trees", "a road crossing a river", "wetland", "parking lot", "harbour", "snow"]


def build_index(path: Path, n: int, dim: int, preset: str, checkpoint: str) -> float:
    """``n`` random unit vectors with plausible tile records, written through IndexStore; returns seconds."""
    import numpy as np

    from geovec.backend.index.store import IndexStore
    from geovec.backend.types import Scene, Stretch, TileRecord

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    wkt = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
    side = int(np.ceil(np.sqrt(n)))
    px = 1e-3
    scene = Scene(scene_id="synthetic", name="synthetic", sources=(str(path / "synthetic.tif"),), bands=(),
                  rgb=(1, 2, 3), crs_wkt=wkt, transform=(px / 32, 0.0, -82.0, 0.0, -px / 32, 30.0),
                  width=side * 32, height=side * 32, dtype="uint8", nodata=None, fingerprint="bench")
    store = IndexStore.create(path, dim=dim, preset=preset, checkpoint=checkpoint,
                              tiling={"tile_size": 32, "overlap": 0.0, "resolution": None, "min_valid_fraction": 0.5,
                                      "bands": None, "percentiles": [2.0, 98.0]})
    store.upsert_scene(scene, Stretch((0.0,) * 3, (255.0,) * 3, "identity"))
    batch = 5000
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        vecs = rng.standard_normal((len(idx), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        recs = []
        for i in idx:
            r, c = divmod(i, side)
            x0, y1 = -82.0 + c * px, 30.0 - r * px
            fp = f"POLYGON (({x0} {y1 - px}, {x0 + px} {y1 - px}, {x0 + px} {y1}, {x0} {y1}, {x0} {y1 - px}))"
            recs.append(TileRecord(tile_id=f"t{i:07d}", scene_id="synthetic", sources=scene.sources,
                                   window=(c * 32, r * 32, 32, 32), crs_wkt=wkt, bounds=(x0, y1 - px, x0 + px, y1),
                                   footprint_wgs84=fp, center_lat=y1 - px / 2, center_lon=x0 + px / 2, gsd=100.0,
                                   valid_fraction=1.0))
        store.add(recs, vecs)
    store.complete_scene("synthetic")
    store.close()
    return time.perf_counter() - t0


def percentiles(xs: list[float]) -> tuple[float, float, float]:
    s = sorted(xs)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return statistics.median(s), q[98], statistics.mean(s)


def start_server(home: Path, model: Path, roots: list[Path]) -> tuple[subprocess.Popen, dict]:
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "server.json"
    env = {**os.environ, "GEOVEC_DATA_DIR": str(home / "data"), "GEOVEC_LOG_DIR": str(home / "log"),
           "GEOVEC_ALLOWED_ROOTS": os.pathsep.join(map(str, roots)), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                             "--model", str(model), "--token-file", str(token_file), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=open(home / "console.log", "wb"), env=env)  # noqa: SIM115
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            info = json.loads(token_file.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("geovec serve did not start: " + (home / "console.log").read_text()[-2000:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()

    import httpx
    import torch

    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model
    from geovec.backend.schemas import SearchRequest
    from geovec.backend.server.state import StoreCache
    from geovec.backend.service import run_search

    torch.set_num_threads(1)  # same as one request thread in the server; fairer on a shared box
    print(machine("cpu"))
    root = Path(tempfile.mkdtemp(prefix="bench-http-"))
    model_dir = write_tiny_model(root / "tiny")
    emb = load_embedder(str(model_dir), device="cpu")
    idx = root / "idx"
    secs = build_index(idx, args.n, int(emb.dim), emb.preset.name, emb.checkpoint_id)
    print(f"index: {args.n} vectors x {emb.dim}-d (tiny model's dim) written through IndexStore in {secs:.1f} s")

    reqs = [SearchRequest(index=str(idx), text=f"{WORDS[i % len(WORDS)]} {i}", k=args.k)
            for i in range(args.queries)]
    cache = StoreCache()
    for r in reqs[:20]:
        run_search(r, emb, cache)
    inproc = []
    for r in reqs:
        t0 = time.perf_counter()
        resp = run_search(r, emb, cache)
        inproc.append((time.perf_counter() - t0) * 1000)
        assert len(resp.features) == args.k
    cache.close_all()

    proc, info = start_server(root / "srv", model_dir, [root])
    try:
        with httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"},
                          timeout=120) as c:
            for r in reqs[:20]:  # loads the model and opens the index
                assert c.post("/v1/search", json=r.model_dump(exclude_none=True)).status_code == 200
            http = []
            for r in reqs:
                body = r.model_dump(exclude_none=True)
                t0 = time.perf_counter()
                resp = c.post("/v1/search", json=body)
                http.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200 and len(resp.json()["features"]) == args.k, resp.text[:300]
    finally:
        proc.terminate()
        proc.wait(30)
    a, b = percentiles(inproc), percentiles(http)
    print(f"text search, k={args.k}, {args.queries} queries each, tiny-model text encode included on both sides")
    print(f"{'':12s}{'p50 ms':>10s}{'p99 ms':>10s}{'mean ms':>10s}")
    print(f"{'in process':12s}{a[0]:10.2f}{a[1]:10.2f}{a[2]:10.2f}")
    print(f"{'over HTTP':12s}{b[0]:10.2f}{b[1]:10.2f}{b[2]:10.2f}")
    over = b[0] - a[0]
    print(f"HTTP overhead at p50: {over:.2f} ms (target <= 5 ms: {'met' if over <= 5 else 'NOT met'}); "
          f"at p99: {b[1] - a[1]:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
