"""The embedding model: a Qwen2-VL checkpoint + its preset, with an ``encode()`` contract.

``load_embedder`` is the one factory used by indexing, querying, training and
evaluation, so preprocessing cannot drift apart. Everything loads through
``from_pretrained``: the tiny local model and real hub checkpoints alike.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelUnavailableError, NotFoundError
from ..types import Box, EmbedInput
from .presets import PRESETS, Preset, get_preset

log = logging.getLogger(__name__)

_GET_A_MODEL = ("get one by: `geovec model tiny DIR` (a tiny random model for plumbing only), "
                "a local checkpoint directory (--model /path/to/dir), a populated HF_HOME cache, "
                "or network access to the Hugging Face hub")


def _resolve_device(device: str) -> Any:
    import torch

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available", "use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}", "use auto, cpu or cuda[:N]")
    return torch.device(device)


class Embedder:
    """A loaded checkpoint + preset. ``encode()`` is the model contract."""

    def __init__(self, model: Any, processor: Any, preset: Preset, *, device: Any, checkpoint_id: str) -> None:
        self.model = model
        self.processor = processor
        self.preset = preset
        self.device = device
        self.checkpoint_id = checkpoint_id
        self.dim = int(_text_config(model.config).hidden_size)
        self._local = threading.local()
        self.processor.tokenizer.padding_side = "right"

    @property
    def instructions(self) -> dict[str, str]:
        """Instruction per task key (``tile``, ``text_query``, ``region_query``, ...) this model uses."""
        return self.preset.instructions

    # -- preprocessing -------------------------------------------------------------------------
    def _thread_processor(self) -> Any:
        """A processor per thread: fast tokenizers refuse concurrent calls on one instance."""
        proc = getattr(self._local, "proc", None)
        if proc is None:
            proc = self.processor if threading.current_thread() is threading.main_thread() \
                else copy.deepcopy(self.processor)
            self._local.proc = proc
        return proc

    def _image(self, image: Any) -> Any:
        from PIL import Image

        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        pil = pil.convert("RGB")
        size = self.preset.image_size
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.Resampling.BILINEAR)
        return pil

    def prepare(self, inputs: Sequence[EmbedInput]) -> Any:
        """Run the processor on a batch (CPU; safe to call from worker threads)."""
        if not inputs:
            raise InputError("nothing to embed: the input list is empty", "pass at least one input")
        texts = [self.preset.build_prompt(inp) for inp in inputs]
        images = [self._image(inp.image) for inp in inputs if inp.image is not None]
        proc = self._thread_processor()
        return proc(text=texts, images=images or None, padding=True, return_tensors="pt")

    # -- forward ---------------------------------------------------------------------------------
    def _backbone(self) -> Any:
        model = self.model
        if hasattr(model, "get_base_model"):  # peft wrapper
            model = model.get_base_model()
        return model.model

    def forward(self, batch: Any) -> Any:
        """Grad-enabled forward of a prepared batch -> (n, dim) L2-normalised tensor."""
        import torch

        batch = batch.to(self.device)
        out = self._backbone()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               pixel_values=batch.get("pixel_values"),
                               image_grid_thw=batch.get("image_grid_thw"), use_cache=False)
        hidden = out.last_hidden_state
        mask = batch["attention_mask"]
        if bool((mask[:, -1] == 1).all()):
            pooled = hidden[:, -1]
        else:  # right padding: the last real token of each row
            last = mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)

    def encode(self, inputs: Sequence[EmbedInput], *, batch_size: int = 8, show_progress_bar: bool = False,
               normalize_embeddings: bool = True) -> np.ndarray:
        """Embed interleaved inputs; float32 (n, dim) in input order.

        Inputs are sorted by prompt length and batched under ``torch.inference_mode``.
        """
        import torch

        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        inputs = list(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(inputs)), key=lambda i: (inputs[i].image is not None,
                                                          len(self.preset.build_prompt(inputs[i]))))
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for s in starts:
                    idx = order[s : s + batch_size]
                    vecs = self.forward(self.prepare([inputs[i] for i in idx]))
                    out[idx] = vecs.float().cpu().numpy()
        finally:
            self.model.train(was_training)
        if not normalize_embeddings:
            return out
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    # -- regions -----------------------------------------------------------------------------------
    def region_inputs(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                      text: str | None = None, latlon: tuple[float, float] | None = None) -> list[EmbedInput]:
        """The K region prompts on one image: ``image`` + each box's tokens + the region instruction."""
        instr = self.instructions["region_query"] if instruction is None else instruction
        return [EmbedInput(instr, image=image, bbox=tuple(float(v) for v in b), latlon=latlon, text=text)  # type: ignore[arg-type]
                for b in boxes]

    def prepare_regions(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                        text: str | None = None, latlon: tuple[float, float] | None = None) -> Any:
        """Preprocess the K region prompts of one image (CPU; thread-safe), for :meth:`forward_regions`."""
        if not len(boxes):
            raise InputError("no region boxes given", "pass at least one box (x1, y1, x2, y2) in image pixels")
        return self.prepare(self.region_inputs(image, boxes, instruction=instruction, text=text, latlon=latlon))

    def forward_regions(self, prepared: Any) -> Any:
        """(K, dim) L2-normalised region vectors of a :meth:`prepare_regions` batch."""
        return self.forward(prepared)

    def encode_regions(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                       text: str | None = None, latlon: tuple[float, float] | None = None,
                       batch_size: int = 32) -> np.ndarray:
        """Embed K boxes on one image; equals ``encode(region_inputs(...))``, float32 (K, dim)."""
        import torch

        boxes = list(boxes)
        out = np.zeros((len(boxes), self.dim), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(boxes), batch_size):
                    prepared = self.prepare_regions(image, boxes[s : s + batch_size], instruction=instruction,
                                                    text=text, latlon=latlon)
                    out[s : s + batch_size] = self.forward_regions(prepared).float().cpu().numpy()
        finally:
            self.model.train(was_training)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write HF layout + geovec.json that ``load_embedder(directory)`` loads as is."""
        out = Path(directory).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out, safe_serialization=True)
        self.processor.save_pretrained(out)
        meta = {"preset": self.preset.name, "parent": self.checkpoint_id}
        (out / "geovec.json").write_text(json.dumps(meta, indent=2))
        return out


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _guess_preset(spec: str) -> str:
    low = spec.lower()
    if "gme" in low:
        return "gme-qwen2vl-2b"
    return "vlm2vec-qwen2vl-2b"


def _tiny_cache_dir() -> Path:
    import platformdirs

    return Path(os.environ.get("GEOVEC_CACHE", platformdirs.user_cache_dir("geovec"))) / "tiny-model"


def load_embedder(spec: str, *, device: str = "auto", preset: str | None = None, adapter: str | None = None,
                  torch_dtype: Any = None) -> Embedder:
    """Load an Embedder from a local directory, a preset name or a hub id.

    Args:
        spec: a checkpoint directory (its ``geovec.json`` names the preset), a preset
            name (``vlm2vec-qwen2vl-2b``, ``gme-qwen2vl-2b``, ``tiny``) or a hub id.
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:N]``.
        preset: override the preset (prompt format) of a directory or hub id.
        adapter: a LoRA adapter (directory or hub id) applied with peft.
        torch_dtype: override the dtype (default: bf16 on CUDA, fp32 on CPU).
    """
    import torch

    if not spec or not str(spec).strip():
        raise InputError("no model given", f"pass --model; {_GET_A_MODEL}")
    dev = _resolve_device(device)
    dtype = torch_dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    path = Path(spec).expanduser()
    if path.is_dir():
        meta_file = path / "geovec.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        pre = get_preset(preset or meta.get("preset") or _guess_preset(str(path)))
        if meta.get("adapter") and adapter is None:
            adapter = str(path / meta["adapter"])
        base, checkpoint = str(path.resolve()), str(path.resolve())
    elif spec in PRESETS or preset is None and "/" not in spec and not path.exists():
        pre = get_preset(preset or spec)
        if pre.name == "tiny" and spec == "tiny":
            from .tiny import write_tiny_model

            cache = _tiny_cache_dir()
            if not (cache / "geovec.json").exists():
                write_tiny_model(cache)
            return load_embedder(str(cache), device=device, torch_dtype=torch_dtype)
        base, adapter = pre.base_model, adapter or pre.adapter
        checkpoint = pre.name
    elif path.exists() or spec.startswith((".", "/", "~")):
        raise NotFoundError(f"model path {spec!r} is not a checkpoint directory", _GET_A_MODEL)
    else:
        pre = get_preset(preset or _guess_preset(spec))
        base, checkpoint = spec, spec
    if adapter and checkpoint in (base, pre.name) and adapter != pre.adapter:
        checkpoint = f"{checkpoint}+{adapter}"
    model, processor = _from_pretrained(base, adapter, dtype, dev)
    log.info("loaded %s (preset %s) on %s", checkpoint, pre.name, dev)
    return Embedder(model, processor, pre, device=dev, checkpoint_id=checkpoint)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers a TCP connect; False under ``HF_HUB_OFFLINE``."""
    import os
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


def _from_pretrained(base: str, adapter: str | None, dtype: Any, dev: Any) -> tuple[Any, Any]:
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    remote = [s for s in (base, adapter) if s and not Path(s).is_dir()]
    # Offline: read the local HF cache only, and fail at once rather than after minutes of retries.
    offline = bool(remote) and not hub_reachable()
    where = " (the Hugging Face hub is unreachable and it is not in the local cache)" if offline else ""
    try:
        model = Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=dtype, attn_implementation="sdpa",
                                                                local_files_only=offline)
        processor = AutoProcessor.from_pretrained(base, local_files_only=offline)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load model {base!r}{where}: {str(e).splitlines()[0][:200]}",
                                    _GET_A_MODEL) from e
    if adapter:
        try:
            from peft import PeftModel

            hub_kwargs: dict[str, Any] = {"local_files_only": True} if offline else {}
            model = PeftModel.from_pretrained(model, adapter, **hub_kwargs)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                f"cannot load LoRA adapter {adapter!r}{where}: {str(e).splitlines()[0][:200]}", _GET_A_MODEL) from e
    model.to(dev)
    model.eval()
    return model, processor
