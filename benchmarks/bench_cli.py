"""``geovec <command> --server`` wall time against the server's own answer, side by side, in one run.

A real ``geovec serve`` (tiny random model, resident) on 127.0.0.1 answers
``search``, ``classify``, ``refine``, ``locate`` and ``ask`` on a small index.
For each command: the wall time of the whole CLI process (``python -m
geovec.backend <command> ... --server URL``: interpreter start, imports, request,
printing) and the round trip of the same request from a warm HTTP client in this
process, with the server's ``took_ms``. The difference is what the thin client
costs; goal <= 0.5 s at p50 on 2 cores. ``python -c pass`` is printed as the
floor any command pays.

    .venv/bin/python benchmarks/bench_cli.py [--runs 5]
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


def start_server(home: Path, model: Path) -> tuple[subprocess.Popen, dict]:
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "server.json"
    env = {**os.environ, "GEOVEC_DATA_DIR": str(home / "data"), "GEOVEC_LOG_DIR": str(home / "log"),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                             "--dtype", "fp32", "--model", str(model), "--preload", "--token-file", str(token_file),
                             "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=open(home / "console.log", "wb"), env=env)  # noqa: SIM115
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            info = json.loads(token_file.read_text())
            if info.get("pid") == proc.pid:
                info["token_file"] = str(token_file)
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
    p.add_argument("--runs", type=int, default=5, help="timed runs per command (after one warm-up)")
    args = p.parse_args()

    import httpx

    from geovec.backend.demo import write_scene
    from geovec.backend.model.tiny import write_tiny_model

    print(machine("cpu"))
    root = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    model = write_tiny_model(root / "tiny")
    (root / "rasters").mkdir()
    write_scene(root / "rasters" / "scene.tif", "mixed", size=256)
    idx = root / "idx"
    res = subprocess.run([sys.executable, "-m", "geovec.backend", "index", str(root / "rasters"), "--index", str(idx),
                          "--model", str(model), "--tile-size", "64", "--device", "cpu", "--dtype", "fp32",
                          "--no-progress"], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("indexing failed: " + res.stderr[-2000:])
    proc, info = start_server(root / "srv", model)
    env = {**os.environ, "GEOVEC_TOKEN_FILE": info["token_file"]}
    try:
        with httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"},
                          timeout=300) as c:
            while c.get("/v1/health").json().get("model_state") not in ("ready", "failed"):
                time.sleep(0.1)
            first = c.post("/v1/search", json={"index": str(idx), "text": "water", "k": 3}).json()
            hit = first["features"][0]["properties"]
            lat, lon, tile = hit["center_lat"], hit["center_lon"], hit["tile_id"]
            box = [lon - 2e-4, lat - 2e-4, lon + 2e-4, lat + 2e-4]
            cases = [
                ("search", ["search", "--index", str(idx), "--text", "water", "--k", "5"],
                 "/v1/search", {"index": str(idx), "text": "water", "k": 5}),
                ("classify", ["classify", "--index", str(idx), "--classes", "water", "forest", "town"],
                 "/v1/classify", {"index": str(idx), "classes": ["water", "forest", "town"], "return_features": False}),
                ("refine", ["refine", "--index", str(idx), "--text", "water", "--good", tile, "--k", "5"],
                 "/v1/refine", {"index": str(idx), "query": {"index": str(idx), "text": "water"}, "good": [tile],
                                "k": 5}),
                ("locate", ["locate", "--index", str(idx), "--box", *map(str, box), "--crs", "EPSG:4326", "--k", "8"],
                 "/v1/locate", {"index": str(idx), "query": {"index": str(idx), "box": box, "crs": "EPSG:4326"},
                                "k": 8}),
                ("ask", ["ask", "--index", str(idx), "--box", *map(str, box), "--crs", "EPSG:4326", "--question",
                         "what is here?", "--answers", "water", "trees", "roofs"],
                 "/v1/ask", {"index": str(idx), "box": box, "crs": "EPSG:4326", "question": "what is here?",
                             "answers": ["water", "trees", "roofs"]}),
            ]
            floor = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                floor.append(time.perf_counter() - t0)
            print(f"tiny random model resident in geovec serve; index of {json.loads((idx / 'index.json').read_text())['count']} tiles; {args.runs} runs "
                  f"per command after one warm-up; load now {os.getloadavg()[0]:.2f}")
            print(f"{'command':10s}{'CLI wall s':>12s}{'HTTP answer s':>15s}{'CLI - answer s':>16s}"
                  f"{'server took_ms':>16s}")
            for name, argv, route, body in cases:
                walls, answers, took = [], [], []
                for i in range(args.runs + 1):
                    t0 = time.perf_counter()
                    r = c.post(route, json=body)
                    answer = time.perf_counter() - t0
                    assert r.status_code == 200, r.text[:300]
                    t0 = time.perf_counter()
                    cli = subprocess.run([sys.executable, "-m", "geovec.backend", *argv, "--server", info["url"]],
                                         capture_output=True, text=True, env=env, cwd=root)
                    wall = time.perf_counter() - t0
                    if cli.returncode != 0:
                        raise SystemExit(f"geovec {name} failed: {cli.stderr[-1000:]}")
                    if i:  # the first round warms the server's caches and the OS's file cache
                        walls.append(wall)
                        answers.append(answer)
                        took.append(float(r.json().get("took_ms") or 0.0))
                w, a = statistics.median(walls), statistics.median(answers)
                print(f"{name:10s}{w:12.2f}{a:15.3f}{w - a:16.2f}{statistics.median(took):16.1f}")
            print(f"python -c pass: {statistics.median(floor):.2f} s (the interpreter alone); goal: CLI - answer "
                  f"<= 0.5 s; load at the end {os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
