"""Search over HTTP (``geovec serve``) against the same search in process, on a 100k-vector index.

Text queries: both sides answer the same text queries with the same tiny model
(its text encode is *included* on both sides), through the same
``service.run_search`` over the same index. The difference is what the server
adds: HTTP + JSON, auth/Host/body guard, validation, the thread hop and the
model lock. Target: overhead <= 5 ms at p50.

Vector queries (``/v1/search/vector``, no model): the same ``--dim``-d vectors
(default 1536, the full-size model's width) against a ``--vec-n`` index, in
process (``run_vector_search``) and over HTTP twice in the same run: the vector
as a JSON float list (``vector``) and as base64 little-endian float32
(``vector_b64``). Client-side encoding is inside the HTTP timings. Target:
overhead <= 3 ms at p50 on an idle machine.

    .venv/bin/python benchmarks/bench_http.py [--n 100000] [--queries 300] [--only text|vector]
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
from typing import Any

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


def query_vectors(args: argparse.Namespace) -> list[list[float]]:
    import numpy as np

    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [[float(x) for x in v] for v in vecs]


def vector_in_process(vidx: Path, args: argparse.Namespace) -> list[float]:
    """``run_vector_search`` on prebuilt requests (what the route calls once the body is parsed)."""
    from geovec.backend.schemas_workflows import VectorSearchRequest
    from geovec.backend.server.state import StoreCache
    from geovec.backend.workflows.service import run_vector_search

    reqs = [VectorSearchRequest(index=str(vidx), vector=v, k=args.k) for v in query_vectors(args)]
    cache = StoreCache()
    for r in reqs[:20]:
        run_vector_search(r, cache)
    out = []
    for r in reqs:
        t0 = time.perf_counter()
        resp = run_vector_search(r, cache)
        out.append((time.perf_counter() - t0) * 1000)
        assert len(resp.features) == args.k
    cache.close_all()
    return out


def vector_over_http(c: Any, vidx: Path, args: argparse.Namespace, out: dict[str, list[float]]) -> None:
    """The same vectors to ``/v1/search/vector``, as a JSON list and as ``vector_b64``, interleaved."""
    from geovec.backend.vector_codec import to_b64

    vecs = query_vectors(args)
    for v in vecs[:20]:  # opens the index
        assert c.post("/v1/search/vector", json={"index": str(vidx), "vector": v, "k": args.k}).status_code == 200
    for i, v in enumerate(vecs):
        order = ("json", "b64") if i % 2 else ("b64", "json")
        for name in order:
            t0 = time.perf_counter()
            body = {"index": str(vidx), "k": args.k, **({"vector": v} if name == "json" else {"vector_b64": to_b64(v)})}
            resp = c.post("/v1/search/vector", json=body)
            out[name].append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200 and len(resp.json()["features"]) == args.k, resp.text[:300]


def body_costs(vidx: Path, args: argparse.Namespace) -> str:
    """Client encode + ``json.loads`` + model validation of one request body, JSON list vs base64."""
    from geovec.backend.schemas_workflows import VectorSearchRequest
    from geovec.backend.vector_codec import to_b64

    out = []
    for name in ("json", "b64"):
        times = []
        for v in query_vectors(args):
            t0 = time.perf_counter()
            body = {"index": str(vidx), "k": args.k, **({"vector": v} if name == "json" else {"vector_b64": to_b64(v)})}
            VectorSearchRequest.model_validate(json.loads(json.dumps(body).encode()))
            times.append((time.perf_counter() - t0) * 1000)
        out.append(f"{name} {statistics.median(times):.2f} ms")
    return ", ".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dim", type=int, default=1536, help="vector width for the vector-route part")
    p.add_argument("--vec-n", type=int, default=5_000, help="vectors in the vector-route part's index")
    p.add_argument("--only", choices=["text", "vector"], help="run one part")
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
    if args.only != "vector":
        secs = build_index(idx, args.n, int(emb.dim), emb.preset.name, emb.checkpoint_id)
        print(f"index: {args.n} vectors x {emb.dim}-d (tiny model's dim) written through IndexStore in {secs:.1f} s")
    vidx = root / "vidx"
    if args.only != "text":
        secs = build_index(vidx, args.vec_n, args.dim, emb.preset.name, emb.checkpoint_id)
        print(f"vector index: {args.vec_n} vectors x {args.dim}-d written through IndexStore in {secs:.1f} s")
    vec_inproc = vector_in_process(vidx, args) if args.only != "text" else []

    inproc: list[float] = []
    reqs = [SearchRequest(index=str(idx), text=f"{WORDS[i % len(WORDS)]} {i}", k=args.k)
            for i in range(args.queries)] if args.only != "vector" else []
    cache = StoreCache()
    for r in reqs[:20]:
        run_search(r, emb, cache)
    for r in reqs:
        t0 = time.perf_counter()
        resp = run_search(r, emb, cache)
        inproc.append((time.perf_counter() - t0) * 1000)
        assert len(resp.features) == args.k
    cache.close_all()

    http: list[float] = []
    vec_http: dict[str, list[float]] = {"json": [], "b64": []}
    proc, info = start_server(root / "srv", model_dir, [root])
    try:
        with httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"},
                          timeout=120) as c:
            for r in reqs[:20]:  # loads the model and opens the index
                assert c.post("/v1/search", json=r.model_dump(exclude_none=True)).status_code == 200
            for r in reqs:
                body = r.model_dump(exclude_none=True)
                t0 = time.perf_counter()
                resp = c.post("/v1/search", json=body)
                http.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200 and len(resp.json()["features"]) == args.k, resp.text[:300]
            if args.only != "text":
                vector_over_http(c, vidx, args, vec_http)
    finally:
        proc.terminate()
        proc.wait(30)
    if reqs:
        a, b = percentiles(inproc), percentiles(http)
        print(f"text search, k={args.k}, {args.queries} queries each, tiny-model text encode included on both sides")
        print(f"{'':12s}{'p50 ms':>10s}{'p99 ms':>10s}{'mean ms':>10s}")
        print(f"{'in process':12s}{a[0]:10.2f}{a[1]:10.2f}{a[2]:10.2f}")
        print(f"{'over HTTP':12s}{b[0]:10.2f}{b[1]:10.2f}{b[2]:10.2f}")
        over = b[0] - a[0]
        print(f"HTTP overhead at p50: {over:.2f} ms (target <= 5 ms: {'met' if over <= 5 else 'NOT met'}); "
              f"at p99: {b[1] - a[1]:.2f} ms")
    if vec_inproc:
        a = percentiles(vec_inproc)
        print(f"vector search (/v1/search/vector), {args.dim}-d, k={args.k}, {args.queries} queries each, "
              f"{args.vec_n}-vector index; JSON and base64 requests interleaved, client encoding included")
        print(f"{'':22s}{'p50 ms':>10s}{'p99 ms':>10s}{'mean ms':>10s}{'over p50':>10s}")
        print(f"{'in process':22s}{a[0]:10.2f}{a[1]:10.2f}{a[2]:10.2f}{'':>10s}")
        for name, label in (("json", "HTTP, JSON list"), ("b64", "HTTP, vector_b64")):
            b = percentiles(vec_http[name])
            print(f"{label:22s}{b[0]:10.2f}{b[1]:10.2f}{b[2]:10.2f}{b[0] - a[0]:10.2f}")
        print("of which request encode + parse + validate alone, in process, p50: " + body_costs(vidx, args))
        over = percentiles(vec_http["b64"])[0] - a[0]
        print(f"vector_b64 overhead at p50: {over:.2f} ms (target <= 3 ms on an idle machine: "
              f"{'met' if over <= 3 else 'NOT met'}; load now {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
