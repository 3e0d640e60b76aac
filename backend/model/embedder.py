"""``load_embedder``: the one factory that turns a model spec into an :class:`Embedder`.

Indexing, querying, training and evaluation all load through it, so preprocessing
cannot drift apart. Everything loads through ``from_pretrained``: the tiny local
model and real hub checkpoints alike, straight into the target dtype.

A spec is a preset name, a hub id, a checkpoint folder (``config.json``, with an
optional ``geovec.json`` naming its preset, adapter, instructions and image policy) or a LoRA
adapter folder (``adapter_config.json``: its base comes from ``geovec.json`` or the
adapter config).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelUnavailableError, NotFoundError
from .adapters import is_adapter_dir, merge_adapter
from .encoder import META_FILE, Embedder
from .identity import resolve_dtype, weights_fingerprint
from .presets import PRESETS, ImagePolicy, get_preset
from .vision import configure_vision, vision_options

__all__ = ["Embedder", "load_embedder", "hub_reachable", "MIN_TRANSFORMERS", "MIN_PEFT"]

log = logging.getLogger(__name__)

#: Oldest releases the loader works with: transformers 4.52 split Qwen2-VL into ``model.visual`` +
#: ``model.language_model`` (the modules the forward pass calls); peft 0.12 has the strict-load API used here.
MIN_TRANSFORMERS = "4.52"
MIN_PEFT = "0.12"

_GET_A_MODEL = ("get one by: `geovec model tiny DIR` (a tiny random model for plumbing only), "
                "a local checkpoint directory (--model /path/to/dir), a populated HF_HOME cache, "
                "or network access to the Hugging Face hub")


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def check_versions() -> None:
    """ModelUnavailableError when transformers or peft is older than the code needs."""
    import peft
    import transformers

    for mod, floor in ((transformers, MIN_TRANSFORMERS), (peft, MIN_PEFT)):
        if _version_tuple(mod.__version__) < _version_tuple(floor):
            raise ModelUnavailableError(f"{mod.__name__} {mod.__version__} is too old (GeoVec needs >= {floor})",
                                        f"upgrade it: pip install '{mod.__name__}>={floor}'")


def _resolve_device(device: str) -> Any:
    import torch

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available", "use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}", "use auto, cpu or cuda[:N]")
    return torch.device(device)


def _guess_preset(spec: str) -> str:
    return "gme-qwen2vl-2b" if "gme" in spec.lower() else "vlm2vec-qwen2vl-2b"


def _tiny_cache_dir() -> Path:
    import platformdirs

    return Path(os.environ.get("GEOVEC_CACHE", platformdirs.user_cache_dir("geovec"))) / "tiny-model"


def _read_meta(folder: Path) -> dict[str, Any]:
    f = folder / META_FILE
    if not f.exists():
        return {}
    try:
        meta = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(f"{f} is not valid JSON: {e}", "fix or delete it") from e
    if not isinstance(meta, dict):
        raise ModelUnavailableError(f"{f} is not a JSON object", "fix or delete it")
    return meta


def _saved_image(pre: Any, meta: dict[str, Any]) -> Any:
    """The preset with the image policy a saved model was trained at (geovec.json ``image``), if any."""
    saved = meta.get("image")
    if not saved:
        return pre
    try:
        policy = ImagePolicy(**saved)
    except TypeError as e:
        raise ModelUnavailableError(f"geovec.json image policy {saved!r} is not valid: {e}",
                                    "fix or remove its \"image\" entry") from e
    if policy.kind not in ("fixed", "smart"):
        raise ModelUnavailableError(f"geovec.json image kind {policy.kind!r} is not fixed or smart",
                                    "fix or remove its \"image\" entry")
    return replace(pre, image=policy)


def _adapter_base(adapter_dir: Path, meta: dict[str, Any]) -> str:
    """The base model of a local adapter folder (geovec.json ``base``, else the adapter config's)."""
    base = meta.get("base")
    if not base:
        try:
            base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError) as e:
            raise ModelUnavailableError(f"cannot read {adapter_dir / 'adapter_config.json'}: {e}",
                                        "re-download the adapter") from e
    if not base:
        raise ModelUnavailableError(f"adapter {adapter_dir} does not name its base model",
                                    f"add {{\"base\": \"PATH_OR_HUB_ID\"}} to {adapter_dir / META_FILE}")
    local = (adapter_dir / str(base)).resolve()
    return str(local) if local.is_dir() else str(base)


def load_embedder(spec: str, *, device: str = "auto", preset: str | None = None, adapter: str | None = None,
                  dtype: str | None = "auto", image_size: int | None = None,
                  torch_dtype: Any = None, batched_vision: bool | None = None,
                  compile: bool | None = None) -> Embedder:
    """Load an Embedder from a preset name, a hub id, a checkpoint folder or an adapter folder.

    Args:
        spec: what to load (see the module docstring).
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:N]``.
        preset: override the preset (prompt format) of a folder or hub id.
        adapter: a LoRA adapter (folder or hub id) merged into the base at load.
        dtype: ``auto`` (the preset's CUDA dtype on GPUs, bf16 on CPUs with native bf16,
            else fp32), ``bf16``, ``fp16`` or ``fp32``; the weights load straight into it.
            ``int8`` (CPU): fp32 weights whose linear layers are then quantised (:mod:`.quantize`).
        image_size: edge in pixels the preset's images are sized to (default: the preset's).
        torch_dtype: a torch dtype, overriding ``dtype``.
        batched_vision: one attention call per vision block for a batch of equal-size images
            (default: ``GEOVEC_BATCHED_VISION``, off); see :mod:`.vision`.
        compile: ``torch.compile`` the vision blocks (implies ``batched_vision``; default:
            ``GEOVEC_COMPILE``, off). Compiling happens at the first forward, which raises
            :class:`~.vision.CompileError` if it fails.
    """
    check_versions()
    if not spec or not str(spec).strip():
        raise InputError("no model given", f"pass --model; {_GET_A_MODEL}")
    dev = _resolve_device(device)
    batched_vision, compile = vision_options(batched_vision, compile)
    path = Path(spec).expanduser()
    meta: dict[str, Any] = {}
    local_folders: list[Path] = []
    if path.is_dir() and (path / "config.json").is_file():
        meta = _read_meta(path)
        pre = get_preset(preset or meta.get("preset") or _guess_preset(str(path)))
        if meta.get("adapter") and adapter is None:
            adapter = str((path / meta["adapter"]).resolve())
        base = checkpoint = str(path.resolve())
    elif path.is_dir() and is_adapter_dir(path):
        meta = _read_meta(path)
        pre = get_preset(preset or meta.get("preset") or "vlm2vec-qwen2vl-2b")
        adapter = str(path.resolve())
        base = _adapter_base(path, meta)
        checkpoint = f"{base}+{adapter}"
    elif spec in PRESETS or (preset is None and "/" not in spec and not path.exists()):
        pre = get_preset(preset or spec)
        if pre.name == "tiny" and spec == "tiny":
            from .tiny import write_tiny_model

            cache = _tiny_cache_dir()
            if not (cache / META_FILE).exists():
                write_tiny_model(cache)
            return load_embedder(str(cache), device=device, dtype=dtype, image_size=image_size,
                                 torch_dtype=torch_dtype, batched_vision=batched_vision, compile=compile)
        base, adapter = pre.base_model, adapter or pre.adapter
        checkpoint = pre.name
    elif path.exists() or spec.startswith((".", "/", "~")):
        raise NotFoundError(f"model path {spec!r} is not a checkpoint or adapter folder", _GET_A_MODEL)
    else:
        pre = get_preset(preset or _guess_preset(spec))
        base = checkpoint = spec
    if adapter and checkpoint in (base, pre.name) and adapter != pre.adapter:
        checkpoint = f"{checkpoint}+{adapter}"
    pre = _saved_image(pre.with_instructions(meta.get("instructions")), meta).with_image_size(image_size)
    target = torch_dtype or resolve_dtype(dtype, dev.type, cuda_dtype=pre.cuda_dtype)
    model, processor, folders = _from_pretrained(base, adapter, target, dev, base_dtype=_base_dtype(pre, adapter))
    if torch_dtype is None and (dtype or "").lower() == "int8":
        from .quantize import quantize_int8

        model = quantize_int8(model)
    local_folders.extend(folders)
    configure_vision(model, batched=batched_vision, compile=compile)
    fingerprint = weights_fingerprint(*local_folders)
    log.info("loaded %s (preset %s, %s, images %s) on %s", checkpoint, pre.name, target, pre.image.describe(), dev)
    return Embedder(model, processor, pre, device=dev, checkpoint_id=checkpoint, fingerprint=fingerprint,
                    source=spec)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers a TCP connect; False under ``HF_HUB_OFFLINE``."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _local_folder(spec: str, offline: bool) -> Path | None:
    """The local folder holding ``spec`` (itself, or its hub cache snapshot)."""
    if Path(spec).is_dir():
        return Path(spec)
    try:
        from transformers.utils import cached_file

        found = cached_file(spec, "config.json", local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: no fingerprint beyond the name
        return None
    return Path(found).parent if found else None


def _adapter_snapshot(adapter: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(adapter, local_files_only=True,
                                  allow_patterns=["adapter_config.json", "adapter_model.*"]))


def _fast_tokenizer(base: str, offline: bool) -> Any:
    """The checkpoint's Rust tokenizer (the same ids as the Python one, ~10x quicker), or None.

    ``use_fast=False`` above keeps the reference (PIL) image processor, but it also gives
    the slow Python tokenizer, which dominates the cost of K region prompts on a small image.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(base, local_files_only=offline, use_fast=True)
    except (OSError, ValueError) as e:
        log.debug("no fast tokenizer for %s (%s): keeping the Python one", base, e)
        return None
    return tok if getattr(tok, "is_fast", False) else None


def _base_dtype(pre: Any, adapter: str | None) -> Any:
    """The dtype base weights are rounded to before ``adapter`` is merged (the preset's ``base_dtype``)."""
    if not adapter or pre.base_dtype != "bf16":
        return None
    import torch

    return torch.bfloat16


def _from_pretrained(base: str, adapter: str | None, dtype: Any, dev: Any,
                     base_dtype: Any = None) -> tuple[Any, Any, list[Path]]:
    """Model + processor + local folders; the base loads in ``base_dtype`` (when given), then
    moves to ``dtype`` (a bf16 -> fp32 upcast is exact) before the adapter is merged in ``dtype``."""
    import transformers
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    remote = [s for s in (base, adapter) if s and not Path(s).is_dir()]
    # Offline: read the local HF cache only, and fail at once rather than after minutes of retries.
    offline = bool(remote) and not hub_reachable()
    where = " (the Hugging Face hub is unreachable and it is not in the local cache)" if offline else ""
    dtype_kw = "dtype" if _version_tuple(transformers.__version__) >= (4, 56) else "torch_dtype"
    try:
        model = Qwen2VLForConditionalGeneration.from_pretrained(
            base, attn_implementation="sdpa", local_files_only=offline, low_cpu_mem_usage=True,
            **{dtype_kw: base_dtype or dtype})
        processor = AutoProcessor.from_pretrained(base, local_files_only=offline, use_fast=False)
        processor.tokenizer = _fast_tokenizer(base, offline) or processor.tokenizer
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load model {base!r}{where}: {str(e).splitlines()[0][:200]}",
                                    _GET_A_MODEL) from e
    folders = [f for f in (_local_folder(base, offline),) if f is not None]
    if adapter:
        if base_dtype is not None and base_dtype != dtype:
            model = model.to(dtype)
        model = merge_adapter(model, adapter, local_files_only=offline)
        folders.append(Path(adapter) if Path(adapter).is_dir() else _adapter_snapshot(adapter))
    model.to(dev)
    model.eval()
    return model, processor, folders
