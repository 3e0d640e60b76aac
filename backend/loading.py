"""Loading what a request needs: a model (once per process), the model an index was built with, an index
opened read-only, its sidecar. The service layer, the workflows and the indexing code share these."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .errors import InputError, ModelMismatchError, ModelUnavailableError
from .index import files
from .index.files import SIDECAR
from .types import TilingParams

if TYPE_CHECKING:
    from .index.store import IndexStore
    from .model.embedder import Embedder

log = logging.getLogger(__name__)

_models: dict[tuple[str, str, str | None, str, int | None], Embedder] = {}
_models_lock = threading.Lock()

#: An Embedder, or a zero-argument callable giving one (loaded only when needed).
EmbedderLike = Union["Embedder", Callable[[], "Embedder"]]


def load_model(spec: str, *, device: str = "auto", preset: str | None = None, dtype: str = "auto",
               image_size: int | None = None) -> Embedder:
    """Load (once per process) the model named by ``spec``: preset name, local dir or hub id."""
    from .model.embedder import load_embedder

    key = (spec, device, preset, dtype, image_size)
    with _models_lock:
        if key not in _models:
            _models[key] = load_embedder(spec, device=device, preset=preset, dtype=dtype, image_size=image_size)
        return _models[key]


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The validated index sidecar (index.json); NotFoundError / IndexCorruptError with hints."""
    return files.read_index_sidecar(path)


def model_for_index(path: str | Path, *, model: str | None = None, device: str = "auto",
                    dtype: str = "auto") -> Embedder:
    """The Embedder to query the index at ``path`` with.

    ``model`` overrides the checkpoint recorded in the sidecar; either way the
    loaded model's dimension must match the index (else ModelMismatchError).
    """
    meta = read_sidecar(path)
    spec = model or meta.get("checkpoint") or meta.get("preset")
    if not spec:
        raise ModelUnavailableError(f"index {path} records no model checkpoint",
                                    "pass --model PATH_OR_ID_OR_PRESET")
    preset = meta.get("preset") if model is None else None
    try:
        emb = load_model(str(spec), device=device, preset=preset, dtype=dtype)
    except ModelUnavailableError as e:
        if model is None:
            raise ModelUnavailableError(
                f"the model this index was built with ({spec}) cannot be loaded: {e.message}",
                "pass --model with a local copy of it") from e
        raise
    dim = meta.get("dim")
    if dim is not None and int(dim) != int(emb.dim):
        raise ModelMismatchError(f"model {spec} gives {emb.dim}-d vectors but index {path} holds {dim}-d ones",
                                 f"query with the index's model ({meta.get('checkpoint')})")
    image = (meta.get("model") or {}).get("image")
    if not isinstance(image, dict) or image == emb.identity.get("image"):
        return emb
    from .binding import image_policy_change

    if image_policy_change({"image": image}, emb.identity):
        return emb  # not adopted: binding refuses the index (its images were fed otherwise), see binding.py
    return emb.with_image(image)


def open_index(path: str | Path, *, cache: MutableMapping[str, IndexStore] | None = None) -> IndexStore:
    """Open the index at ``path`` read-only (reused from ``cache`` when given)."""
    key = str(Path(path).expanduser().resolve())
    if cache is not None and key in cache:
        return cache[key]
    from .index.store import IndexStore

    store = IndexStore.open(key, writable=False)
    if cache is not None:
        cache[key] = store
    return store


def tiling_params(opts: Any) -> TilingParams:
    """TilingParams from :class:`TilingOptions` (or any object with the same fields)."""
    return TilingParams.from_options(opts)


def resolve_embedder(embedder: EmbedderLike | None, *, model: str | None, index: str) -> Embedder:
    """``embedder`` (called if it is a callable giving one), else ``model`` loaded, else the index's own model."""
    if embedder is not None:
        return embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder  # type: ignore[return-value]
    if model:
        return load_model(model)
    if (Path(index).expanduser() / SIDECAR).exists():
        return model_for_index(index)
    raise InputError("no model given for a new index", "pass --model PATH_OR_ID_OR_PRESET (e.g. a tiny model dir)")
