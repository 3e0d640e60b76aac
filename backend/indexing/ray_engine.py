"""The Ray Data engine: the pipeline's read and embed stages on a Ray cluster.

``geovec index FOLDER --index DIR --engine ray [--address auto|ray://HOST:10001]``.
The driver (this process) scans, plans and writes exactly as the local engine does
(:func:`geovec.backend.indexing.index_folder` with :class:`RayRunner` as its stage
runner), so resuming, incremental updates and crash safety are the same: every
batch is committed to SQLite as it arrives, scenes are marked complete only once
all their windows came back, a rerun skips stored tile ids. On the cluster:

1. one row per batch of windows (``iter_batches``) ->
2. ``map_batches(_ReadStage)``: reader actors (one CPU each) do the windowed reads,
   stretch and valid-fraction filter with :class:`~geovec.backend.indexing.stages.TileReader`
   (each keeps its scene's files open) and compute the tile records ->
3. ``map_batches(_EmbedStage)``: model actors (``num_gpus=1`` each where the cluster
   has GPUs, else one CPU each) run ``Embedder.prepare`` + :func:`embed_batch` ->
4. streamed back to the driver's :class:`~geovec.backend.indexing.stages.TileWriter`.

Rasters and the model must be readable at the same paths on every node (a shared
file system, or a hub id every node can download); the index lives on the driver.
Ray is an optional extra: ``pip install 'geovec[ray]'``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import GeoVecError, InputError
from ..schemas import FileError, IndexSummary
from ..types import EmbedInput, Scene, Stretch, TileRecord, TilingParams
from .plan import ScenePlan, iter_batches
from .stages import RunProgress, TileReader, TileWriter, embed_batch

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder
    from ..model.presets import Preset

log = logging.getLogger(__name__)

#: The watchdog of a local Ray started by :func:`connect` (its stdin pipe must stay open while we live).
_REAPER: Any = None

RAY_HINT = "install the Ray extra: pip install 'geovec[ray]' (on the driver and on every node of the cluster)"


def import_ray() -> Any:
    """``ray`` with Ray Data, or InputError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise InputError(f"--engine ray needs Ray Data, which cannot be imported ({e})", RAY_HINT) from e
    return ray


def connect(address: str | None = None) -> Any:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:port``, a GCS address), or start a local one.

    A Ray already initialised in this process (e.g. ``ray.init(num_cpus=2)``) is used as it is.
    """
    ray = import_ray()
    if not ray.is_initialized():
        if not address:  # a local Ray, started here: a watchdog stops it if this process is killed
            from . import ray_reaper

            global _REAPER
            _REAPER = _REAPER or ray_reaper.start()
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"cannot reach a Ray cluster at {address!r}: {e}",
                             "start one (`ray start --head`) or give its address: --address auto | "
                             "ray://HOST:10001 | HOST:6379; omit --address for a local Ray") from e
    return ray


@dataclass
class RemoteModel:
    """What the driver knows of a model that only the cluster loads (duck-types an Embedder for the store)."""

    spec: str  # what the actors pass to load_embedder
    dim: int
    preset: Preset
    checkpoint_id: str
    identity: dict[str, Any]  # as Embedder.identity: preset, checkpoint, fingerprint, dtype, image
    preset_override: str | None = None
    device: None = None  # the driver runs no model

    def with_image(self, image: dict[str, Any]) -> RemoteModel:
        """The same model embedding at the image policy ``image`` (the index's)."""
        return replace(self, identity={**self.identity, "image": dict(image)})


def actor_dtype(dtype: str | None, preset: Preset, use_gpu: bool) -> str:
    """The dtype name model actors load with: ``auto`` resolved for the actors' device, on the driver."""
    from ..model.identity import cpu_has_native_bf16

    if dtype and dtype != "auto":
        return dtype
    if use_gpu:
        return preset.cuda_dtype
    return "bf16" if cpu_has_native_bf16() else "fp32"


def _identity(spec: str, preset: str | None, dtype: str, image_size: int | None) -> tuple[int, dict[str, Any]]:
    from ..model.embedder import load_embedder

    emb = load_embedder(spec, device="cpu", preset=preset, dtype=dtype, image_size=image_size)
    return int(emb.dim), dict(emb.identity)


def _local_identity(spec: str, preset: str | None, dtype: str, image_size: int | None) -> RemoteModel | None:
    """A local checkpoint folder's identity from its files (config, metadata, weight hashes); None when unsure."""
    from pathlib import Path

    from ..model.identity import weights_fingerprint
    from ..model.presets import PRESETS, get_preset

    p = Path(spec).expanduser()
    try:
        meta = json.loads((p / "geovec.json").read_text())
        config = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return None
    name = preset or meta.get("preset")
    dim = (config.get("text_config") or {}).get("hidden_size") or config.get("hidden_size")
    if meta.get("adapter") or name not in PRESETS or not isinstance(dim, int):
        return None
    pre = get_preset(name).with_instructions(meta.get("instructions")).with_image_size(image_size)
    checkpoint = str(p.resolve())
    identity = {"preset": pre.name, "checkpoint": checkpoint, "fingerprint": weights_fingerprint(p),
                "dtype": dtype, "image": pre.image.to_dict()}
    return RemoteModel(spec, dim, pre, checkpoint, identity, preset)


def remote_model(spec: str, *, preset: str | None = None, dtype: str = "auto", image_size: int | None = None,
                 use_gpu: bool = False) -> RemoteModel:
    """The dim and identity of model ``spec``, without loading it on the driver.

    A local checkpoint folder is described from its files; anything else (a hub id, a
    preset, an adapter) is loaded once on the cluster. Model actors load with the dtype
    recorded here and check that what they loaded has this identity.
    """
    from ..model.presets import get_preset

    model = _local_identity(spec, preset, dtype, image_size)
    if model is None:
        ray = import_ray()
        dim, ident = ray.get(ray.remote(num_cpus=1)(_identity).remote(spec, preset, "auto", image_size))
        model = RemoteModel(spec, dim, get_preset(str(ident["preset"])), str(ident["checkpoint"]), ident, preset)
    model.identity["dtype"] = actor_dtype(dtype, model.preset, use_gpu)  # weights and image do not change
    return model


# ----------------------------------------------------------------------------- cluster stages

def record_to_json(rec: TileRecord) -> str:
    """A TileRecord as one JSON string (how records travel between stages)."""
    return json.dumps(asdict(rec))


def record_from_json(text: str) -> TileRecord:
    d = json.loads(text)
    for key in ("sources", "window", "bounds"):
        d[key] = tuple(d[key])
    return TileRecord(**d)


class _ReadStage:
    """Reader actor: batch of windows -> one row per window (image, record, kept, error)."""

    def __init__(self, scenes: Sequence[tuple[Scene, Stretch]], tiling: dict[str, Any]) -> None:
        self.scenes = scenes
        self.params = TilingParams.from_dict(tiling)
        self.reader = TileReader(None, self.params)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = self.params.tile_size
        scenes: list[int] = []
        windows: list[list[int]] = []
        images: list[np.ndarray] = []
        records: list[str] = []
        errors: list[str] = []
        for sidx, text in zip(batch["scene"].tolist(), batch["windows"].tolist(), strict=True):
            scene, stretch = self.scenes[sidx]
            self.reader.handles.keep_only(b.path for b in scene.bands)
            error = ""
            for w in json.loads(text):
                got = None
                if not error:
                    try:
                        got = self.reader.read_window(scene, stretch, tuple(w))  # type: ignore[arg-type]
                    except Exception as e:  # noqa: BLE001 - reported per file by the driver
                        error = (str(e) if isinstance(e, GeoVecError) else f"{type(e).__name__}: {e}") or "read failed"
                scenes.append(sidx)
                windows.append(list(w))
                errors.append(error)
                records.append(record_to_json(got[0]) if got else "")
                images.append(got[1] if got else np.zeros((size, size, 3), np.uint8))
        return {"scene": np.asarray(scenes, np.int64), "window": np.asarray(windows, np.int64).reshape(-1, 4),
                "image": np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
                "record": np.asarray(records, dtype=object), "error": np.asarray(errors, dtype=object)}


class _EmbedStage:
    """Model actor: rows with a record -> their vector (zeros for skipped or failed windows)."""

    def __init__(self, spec: str, preset: str | None, device: str, dim: int, identity: dict[str, Any],
                 index: str, force: bool) -> None:
        from ..binding import check_identity
        from ..model.embedder import load_embedder

        emb = load_embedder(spec, device=device, preset=preset, dtype=identity.get("dtype") or "auto")
        image = identity.get("image")
        if isinstance(image, dict) and image != emb.identity.get("image"):
            emb = emb.with_image(image)
        check_identity(identity, emb.identity, index=index, force=force, dims=(dim, int(emb.dim)))
        self.embedder = emb
        self.dim = dim
        self.instruction = emb.preset.instructions["tile"]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["scene"])
        vectors = np.zeros((n, self.dim), np.float32)
        todo = [i for i in range(n) if batch["record"][i] and not batch["error"][i]]
        if todo:
            feats = self.embedder.prepare([EmbedInput(self.instruction, image=batch["image"][i]) for i in todo])
            vectors[todo] = embed_batch(self.embedder, feats)
        return {"scene": batch["scene"], "record": batch["record"], "error": batch["error"], "vector": vectors}


# ----------------------------------------------------------------------------- driver

@dataclass
class RayRunner:
    """A :data:`~geovec.backend.indexing.run.StageRunner` that runs read and embed as Ray Data stages.

    Args:
        model_spec: what model actors load (a checkpoint dir, preset or hub id readable on every node).
        preset: preset override passed to ``load_embedder``.
        device: ``auto`` (GPU actors where the cluster has GPUs), ``cpu`` or ``cuda``.
        actors: model actors (default: one per GPU; on CPUs, the CPUs the readers leave).
        readers: reader actors (default: a quarter of the CPUs, at least one).
    """

    model_spec: str
    preset: str | None = None
    device: str = "auto"
    actors: int | None = None
    readers: int | None = None
    force: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    def layout(self, ray: Any) -> tuple[int, int, bool]:
        """(reader actors, model actors, whether model actors take a GPU) for this cluster."""
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
        use_gpu = gpus > 0 and self.device != "cpu"
        if self.device.startswith("cuda") and not gpus:
            raise InputError(f"device {self.device!r} asked for but the Ray cluster has no GPU",
                             "use --device auto or cpu, or add GPU nodes")
        readers = self.readers or max(1, cpus // 4)
        actors = self.actors or (gpus if use_gpu else max(1, cpus - readers))
        return readers, actors, use_gpu

    def __call__(self, store: IndexStore, embedder: Any, plans: Sequence[ScenePlan], params: TilingParams,
                 batch_size: int, workers: int, cancel: threading.Event, prog: RunProgress,
                 summary: IndexSummary) -> None:
        ray = import_ray()
        writer = TileWriter(store)
        remaining = {i: len(p.windows) for i, p in enumerate(plans)}
        failed: set[int] = set()
        counted: set[int] = set()

        def finish_scene(i: int) -> None:
            if i not in counted:
                counted.add(i)
                summary.scenes += 1
            if remaining[i] <= 0 and i not in failed:
                writer.complete(plans[i].scene.scene_id)
                prog.scenes_done += 1
                remaining[i] = -1 << 62  # completed once

        for i, p in enumerate(plans):
            if not p.windows:  # resumed with nothing left: complete it, as the local engine does
                finish_scene(i)
        items = [{"scene": idx, "windows": json.dumps(job.windows)}
                 for idx, p in enumerate(plans) for job in iter_batches([p], batch_size) if job.windows]
        if items:
            _quiet(ray)
            readers, actors, use_gpu = self.layout(ray)
            self.stats.update(readers=readers, actors=actors, gpu=use_gpu)
            device = "cuda" if use_gpu else "cpu"
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * (readers + actors))))
            ds = ds.map_batches(_ReadStage, batch_size=1, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=readers), num_cpus=1,
                                fn_constructor_kwargs={"scenes": [(p.scene, p.stretch) for p in plans],
                                                       "tiling": params.to_dict()})
            ds = ds.map_batches(_EmbedStage, batch_size=batch_size, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=actors),
                                num_gpus=1 if use_gpu else 0, num_cpus=1,
                                fn_constructor_kwargs={"spec": self.model_spec, "preset": self.preset,
                                                       "device": device, "dim": int(embedder.dim),
                                                       "identity": dict(embedder.identity),
                                                       "index": str(store.path), "force": self.force})
            try:
                for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                    self._write(out, plans, writer, remaining, failed, prog, summary, finish_scene)
                    if cancel.is_set():
                        break
            except GeoVecError:
                raise
            except Exception as e:  # a failed actor or task: one clear error, the index stays consistent
                cause = _root_cause(e)
                if isinstance(cause, GeoVecError):
                    raise cause from e
                raise GeoVecError(f"the Ray pipeline failed: {type(cause).__name__}: {cause}",
                                  "fix the cause and rerun: tiles already written are kept") from e
        writer.checkpoint()

    @staticmethod
    def _write(out: dict[str, np.ndarray], plans: Sequence[ScenePlan], writer: TileWriter,
               remaining: dict[int, int], failed: set[int], prog: RunProgress, summary: IndexSummary,
               finish_scene: Any) -> None:
        records: list[TileRecord] = []
        keep: list[int] = []
        touched: dict[int, None] = {}
        for i, (sidx, rec, err) in enumerate(zip(out["scene"].tolist(), out["record"], out["error"], strict=True)):
            touched[sidx] = None
            remaining[sidx] -= 1
            prog.done += 1
            if sidx in failed:
                continue
            if err:
                failed.add(sidx)
                scene = plans[sidx].scene
                summary.errors.append(FileError(path=",".join(scene.sources), error=str(err)))
                log.warning("scene %s: %s", scene.name, err)
                continue
            if rec:
                records.append(record_from_json(str(rec)))
                keep.append(i)
            else:
                prog.skipped += 1
                summary.tiles_skipped += 1
        if records:
            writer.write(records, out["vector"][keep])
            prog.embedded += len(records)
            summary.tiles += len(records)
        for sidx in touched:
            if sidx not in failed:
                finish_scene(sidx)
        last = plans[next(reversed(touched))].scene if touched else None
        prog.emit(last.sources[0] if last and last.sources else None)


def _quiet(ray: Any) -> None:
    """No Ray Data progress bars or per-stage INFO lines unless geovec logs at INFO (``-v``)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if not log.isEnabledFor(logging.INFO):
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _root_cause(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError.cause, __cause__ chain)."""
    seen = 0
    while seen < 10:
        inner = getattr(e, "cause", None) or e.__cause__
        if inner is None or inner is e:
            return e
        e, seen = inner, seen + 1
    return e


def index_folder_ray(folder: str, index_path: str, *, model_spec: str, params: TilingParams,
                     preset: str | None = None, embedder: Any = None, address: str | None = None,
                     device: str = "auto", dtype: str = "auto", image_size: int | None = None,
                     actors: int | None = None, readers: int | None = None,
                     groups: dict[str, list[str]] | None = None, batch_size: int = 16, progress: Any = None,
                     cancel: threading.Event | None = None, force: bool = False) -> IndexSummary:
    """``index_folder`` with the Ray engine; the driver loads no model unless ``embedder`` is given.

    Args:
        model_spec: checkpoint dir / preset / hub id the model actors load.
        embedder: an Embedder or :class:`RemoteModel` naming the model's identity; None
            describes ``model_spec`` (:func:`remote_model`).
        address: Ray cluster address (None: an initialised Ray, else a new local one).
        dtype, image_size: as ``load_embedder`` (``auto`` is resolved for the actors' device).
        Other arguments: as :func:`~geovec.backend.indexing.index_folder`.
    """
    from .run import index_folder

    ray = connect(address)
    runner = RayRunner(model_spec, preset=preset, device=device, actors=actors, readers=readers, force=force)
    model = embedder if embedder is not None else remote_model(
        model_spec, preset=preset, dtype=dtype, image_size=image_size, use_gpu=runner.layout(ray)[2])
    return index_folder(folder, index_path, cast("Embedder", model), params=params, groups=groups,
                        batch_size=batch_size, progress=progress, cancel=cancel, runner=runner, force=force)


def run_index_ray(req: Any, *, progress: Any = None, cancel: threading.Event | None = None,
                  address: str | None = None, device: str = "auto", actors: int | None = None,
                  readers: int | None = None, dtype: str | None = "auto",
                  image_size: int | None = None) -> IndexSummary:
    """:func:`~geovec.backend.service.run_index` on the Ray engine: ``req.model``, else the index's model."""
    from pathlib import Path

    from ..binding import recorded_identity
    from ..errors import NotFoundError
    from ..index.files import SIDECAR, read_index_sidecar
    from ..model.presets import get_preset

    if not Path(req.folder).expanduser().is_dir():
        raise NotFoundError(f"folder {req.folder!r} does not exist or is not a folder",
                            "give a folder containing .tif/.tiff/.vrt rasters")
    preset = None
    spec = req.model
    model: RemoteModel | None = None
    if not spec and (Path(req.index).expanduser() / SIDECAR).exists():
        meta = read_index_sidecar(req.index)  # the index names its model: nothing to load on the driver
        spec, preset = meta.get("checkpoint") or meta.get("preset"), meta.get("preset")
        ident = recorded_identity(meta)
        if dtype and dtype != "auto":
            ident["dtype"] = dtype
        model = RemoteModel(str(spec), int(meta["dim"]), get_preset(str(preset)), str(meta["checkpoint"]), ident,
                            preset)
    if not spec:
        raise InputError("no model given for a new index", "pass --model PATH_OR_ID_OR_PRESET")
    return index_folder_ray(req.folder, req.index, model_spec=str(spec), preset=preset, embedder=model,
                            params=TilingParams.from_options(req.tiling), address=address, device=device,
                            dtype=dtype or "auto", image_size=image_size, actors=actors, readers=readers,
                            groups=req.groups, batch_size=req.batch_size, progress=progress, cancel=cancel,
                            force=bool(getattr(req, "force", False)))
