"""The CPU read path: one open dataset per worker thread and scene, torch threads beside the readers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from geovec.backend.demo import write_scene
from geovec.backend.indexing.plan import BatchJob, ScenePlan, iter_batches
from geovec.backend.indexing.stages import TileReader, cpu_threads, torch_threads
from geovec.backend.raster.handles import DatasetCache
from geovec.backend.raster.scan import scan_folder
from geovec.backend.raster.stretch import compute_stretch
from geovec.backend.raster.tiling import GridSampler, read_tile
from geovec.backend.types import TilingParams

PARAMS = TilingParams(tile_size=64, min_valid_fraction=0.5)


def _nc_stack(shared_data: Path):
    scenes = [s for s in scan_folder(shared_data / "nc_landsat7").scenes if s.count == 6]
    assert scenes, "the NC Landsat stack was not grouped"
    return scenes[0]


def test_cached_reads_equal_fresh_reads_on_the_nc_stack(shared_data: Path) -> None:
    scene = _nc_stack(shared_data)
    stretch = compute_stretch(scene)
    windows = list(GridSampler(scene, PARAMS))
    with DatasetCache() as cache:
        for w in windows[::5] + [(-20, -20, 64, 64), (460, 420, 64, 64)]:  # boundless edges too
            a, va = read_tile(scene, w, stretch, out_size=64)
            b, vb = read_tile(scene, w, stretch, out_size=64, handles=cache)
            assert va == vb and np.array_equal(a, b), w
        assert cache.opened == 3  # the three RGB files of the six, each once


def test_each_reader_thread_opens_a_scenes_files_once(shared_data: Path) -> None:
    scene = _nc_stack(shared_data)
    plan = ScenePlan(scene, compute_stretch(scene), list(GridSampler(scene, PARAMS)))
    reader = TileReader(None, PARAMS)
    jobs = list(iter_batches([plan], 4))
    assert len(jobs) > 8
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(reader.read, jobs))
    assert sum(len(r) + s for r, _, s in got) == len(plan.windows)
    assert 3 <= reader.handles.opened <= 2 * 3  # per thread and file, never per tile
    reader.close()
    assert all(not h for h in reader.handles._all)


def test_a_thread_closes_the_last_scenes_files_when_it_moves_on(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_scene(tmp_path / f"{name}.tif", "water", size=64, seed=1)
    scenes = scan_folder(tmp_path).scenes
    plans = [ScenePlan(s, compute_stretch(s), list(GridSampler(s, TilingParams(tile_size=32)))) for s in scenes]
    reader = TileReader(None, TilingParams(tile_size=32))
    first = reader.handles.get(scenes[0].sources[0])
    reader.read(BatchJob(plans[1], plans[1].windows, True))
    assert first.closed
    assert list(reader.handles._mine()) == [scenes[1].sources[0]]
    reader.close()


def test_discard_closes_a_handle_and_the_next_read_reopens(tmp_path: Path) -> None:
    write_scene(tmp_path / "a.tif", "water", size=64, seed=1)
    scene = scan_folder(tmp_path).scenes[0]
    stretch = compute_stretch(scene)
    cache = DatasetCache()
    read_tile(scene, (0, 0, 32, 32), stretch, handles=cache)
    src = cache.get(scene.sources[0])
    cache.discard(scene.sources[0])
    assert src.closed
    img, vf = read_tile(scene, (0, 0, 32, 32), stretch, handles=cache)
    assert vf == 1.0 and img.shape == (32, 32, 3) and cache.opened == 2
    cache.close()


def test_torch_runs_on_the_cores_the_readers_leave(tiny_embedder) -> None:
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    with torch_threads(tiny_embedder, workers=1):
        seen.append(torch.get_num_threads())
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
    assert seen[0] == min(before, cpu_threads(1)) and torch.get_num_threads() == before
    assert cpu_threads(10_000) == 1


def test_a_large_cpu_model_keeps_every_core(tiny_embedder, monkeypatch) -> None:
    """A 2B model's forward dwarfs the reads: indexing must not take cores away from it."""
    import torch

    from geovec.backend.indexing import stages

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(stages, "LARGE_MODEL_PARAMS", 1)  # the tiny model counts as large
    with torch_threads(tiny_embedder, workers=10_000):
        assert torch.get_num_threads() == before
    monkeypatch.setattr(stages, "LARGE_MODEL_PARAMS", 10**12)
    with torch_threads(tiny_embedder, workers=10_000):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
