"""The Embedder: a loaded Qwen2-VL checkpoint + its preset, with an ``encode()`` contract.

See :mod:`.presets` for how each checkpoint family is fed, :mod:`.forward` for the
forward pass and :mod:`.embedder` for ``load_embedder``, the one factory.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Box, EmbedInput
from . import forward as fwd
from . import pixels
from .identity import dtype_name
from .presets import QWEN2VL_IMAGE, ImagePolicy, Preset
from .quantize import dtype_label

log = logging.getLogger(__name__)

#: Saved beside a model: its preset, instructions and parent (``Embedder.save``).
META_FILE = "geovec.json"


class Embedder:
    """A loaded checkpoint + preset. ``encode()`` is the model contract."""

    def __init__(self, model: Any, processor: Any, preset: Preset, *, device: Any, checkpoint_id: str,
                 fingerprint: str = "", source: str | None = None) -> None:
        self.model = model
        self.processor = processor
        self.preset = preset
        self.device = device
        self.checkpoint_id = checkpoint_id
        self.fingerprint = fingerprint
        self.source = source or checkpoint_id
        self.dim = int(_text_config(model.config).hidden_size)
        self.image_token_id = int(getattr(model.config, "image_token_id", None)
                                  or processor.tokenizer.convert_tokens_to_ids(QWEN2VL_IMAGE))
        self._local = threading.local()
        self.processor.tokenizer.padding_side = "right"
        configure_processor(self.processor, preset)
        self._device_patches = _device_patches(self.processor, preset)

    @property
    def instructions(self) -> dict[str, str]:
        """Instruction per task key (``tile``, ``text_query``, ``region_query``, ...) this model uses."""
        return self.preset.instructions

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    @property
    def identity(self) -> dict[str, Any]:
        """What an index records to bind itself to this model (preset, checkpoint, weights, dtype, image)."""
        return {"preset": self.preset.name, "checkpoint": self.checkpoint_id, "fingerprint": self.fingerprint,
                "dtype": dtype_label(self.model, dtype_name(self.dtype)), "image": self.preset.image.to_dict()}

    def with_image(self, image: Any) -> Embedder:
        """The same weights with another image policy (an :class:`ImagePolicy` or its dict)."""
        policy = image if isinstance(image, ImagePolicy) else ImagePolicy(**image)
        other = copy.copy(self)
        other.preset = replace(self.preset, image=policy)
        other.processor = copy.deepcopy(self.processor)
        other._local = threading.local()
        configure_processor(other.processor, other.preset)
        other._device_patches = _device_patches(other.processor, other.preset)
        return other

    def tokens_per_image(self, height: int, width: int) -> int:
        """Image tokens an ``height`` x ``width`` input becomes under this model's image policy."""
        return self.preset.image.tokens(height, width)

    # -- preprocessing -------------------------------------------------------------------------
    def _thread_processor(self) -> Any:
        """A processor per thread: fast tokenizers refuse concurrent calls on one instance."""
        proc = getattr(self._local, "proc", None)
        if proc is None:
            proc = self.processor if threading.current_thread() is threading.main_thread() \
                else copy.deepcopy(self.processor)
            self._local.proc = proc
        return proc

    def image(self, image: Any) -> Any:
        """An (H, W, C) uint8 array or PIL image, sized per the preset's image policy (PIL RGB).

        ``fixed`` (VLM2Vec): resized in its own mode first, then converted to RGB and resized
        to the processor's bound, in the order of its evaluation (see :mod:`.presets`); the
        processor's own resize is then the identity, so its pixels can be made on the device.
        """
        from PIL import Image
        from transformers.image_transforms import convert_to_rgb

        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        policy = self.preset.image
        if policy.kind == "fixed":
            assert policy.size is not None
            rgb: Any = convert_to_rgb(pil.resize((policy.size, policy.size), Image.Resampling.BICUBIC))
            h, w = policy.processed_hw(policy.size, policy.size)
            return rgb if rgb.size == (w, h) else rgb.resize((w, h), Image.Resampling.BICUBIC)
        pil = pil.convert("RGB")
        w, h = pil.size  # GME: first to multiples of 28 (its fetch_image), then the processor's smart resize
        rh, rw = pixels.smart_resize(h, w, 28, 4 * 28 * 28, 16384 * 28 * 28)
        return pil.resize((rw, rh), Image.Resampling.BICUBIC)

    def _processor_kwargs(self) -> dict[str, Any]:
        if self.preset.max_length:
            return {"truncation": True, "max_length": self.preset.max_length}
        return {}

    def prepare(self, inputs: Sequence[EmbedInput]) -> Any:
        """Run the processor on a batch (CPU; safe to call from worker threads)."""
        if not inputs:
            raise InputError("nothing to embed: the input list is empty", "pass at least one input")
        from .truncate import fit_inputs

        inputs = fit_inputs(self, list(inputs))  # query text cut to the model's context
        texts = [self.preset.build_prompt(inp) for inp in inputs]
        images = [self.image(inp.image) for inp in inputs if inp.image is not None]
        proc = self._thread_processor()
        if images and self._device_patches:  # pixels patchified on the device (same values as the processor's)
            from transformers import BatchFeature

            u8 = pixels.stack_u8(images)
            grid = pixels.grid_of(u8, proc.image_processor)
            n_tokens = int(grid[0].prod()) // proc.image_processor.merge_size ** 2
            tok = proc.tokenizer([_expand(t, n_tokens) for t in texts], padding=True, return_tensors="pt",
                                 **self._processor_kwargs())
            return BatchFeature({"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                                 pixels.U8_KEY: u8, "image_grid_thw": grid})
        return proc(text=texts, images=images or None, padding=True, return_tensors="pt",
                    **self._processor_kwargs())

    def _on_device(self, batch: Any) -> Any:
        """The batch on the model's device, uint8 images turned into the processor's pixel values there."""
        batch = batch.to(self.device)
        if pixels.U8_KEY in batch:
            batch["pixel_values"] = pixels.patchify(batch.pop(pixels.U8_KEY), self.processor.image_processor)
        return batch

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, batch: Any, *, normalize: bool = True) -> Any:
        """Grad-enabled forward of a prepared batch -> (n, dim) float32 tensor (L2-normalised by default)."""
        return fwd.forward_full(self.model, self.preset.positions, self._on_device(batch), normalize=normalize)

    def encode(self, inputs: Sequence[EmbedInput], *, batch_size: int = 8, show_progress_bar: bool = False,
               normalize_embeddings: bool = True) -> np.ndarray:
        """Embed interleaved inputs; float32 (n, dim) in input order.

        Inputs are sorted by prompt length and batched under ``torch.inference_mode``.
        ``normalize_embeddings=False`` returns the pooled hidden states as they are (their
        norms vary); the default returns unit vectors, which every index and score assumes.
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
        starts: Any = range(0, len(order), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        with _eval_mode(self.model), torch.inference_mode():
            for s in starts:
                idx = order[s : s + batch_size]
                vecs = self.forward(self.prepare([inputs[i] for i in idx]), normalize=normalize_embeddings)
                out[idx] = vecs.float().cpu().numpy()
        return out

    # -- regions -----------------------------------------------------------------------------------
    def region_inputs(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                      text: str | None = None, latlon: tuple[float, float] | None = None) -> list[EmbedInput]:
        """The K region prompts on one image: ``image`` + each box's tokens + the region instruction."""
        instr = self.instructions["region_query"] if instruction is None else instruction
        return [EmbedInput(instr, image=image, bbox=tuple(float(v) for v in b), latlon=latlon, text=text)  # type: ignore[arg-type]
                for b in boxes]

    def prepare_regions(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                        text: str | None = None, latlon: tuple[float, float] | None = None) -> Any:
        """Preprocess K region prompts on one image (CPU; thread-safe) for :meth:`forward_regions`.

        The image goes through the processor once. The K prompts share everything up to
        their image's last token: that prefix is tokenised once, with the image token
        expanded exactly as the processor expands it, and each prompt's remaining text
        after it (special tokens split tokenisation, so the ids are those of the whole
        prompt). Rows are right-padded; ``input_ids`` holds the K full prompts.
        """
        import torch
        from transformers import BatchFeature

        if not len(boxes):
            raise InputError("no region boxes given", "pass at least one box (x1, y1, x2, y2) in image pixels")
        inputs = self.region_inputs(image, boxes, instruction=instruction, text=text, latlon=latlon)
        texts = [self.preset.build_prompt(inp) for inp in inputs]
        cut = texts[0].rindex(QWEN2VL_IMAGE) + len(QWEN2VL_IMAGE)
        if any(t[:cut] != texts[0][:cut] for t in texts):
            raise InputError("region prompts on one image must share their text up to the image",
                             "keep the box and text after the image in the instruction")
        proc = self._thread_processor()
        if self._device_patches:
            u8 = pixels.stack_u8([self.image(image)])
            image_part = {pixels.U8_KEY: u8, "image_grid_thw": pixels.grid_of(u8, proc.image_processor)}
        else:
            done = proc.image_processor(images=[self.image(image)], return_tensors="pt")
            image_part = {"pixel_values": done["pixel_values"], "image_grid_thw": done["image_grid_thw"]}
        n_tokens = int(image_part["image_grid_thw"][0].prod()) // proc.image_processor.merge_size ** 2
        tok = proc.tokenizer
        head = _expand(texts[0][:cut], n_tokens)
        prefix = tok(head, add_special_tokens=False)["input_ids"]
        tails = tok([t[cut:] for t in texts], add_special_tokens=False)["input_ids"]
        rows = [prefix + tail for tail in tails]
        if self.preset.max_length:
            rows = [r[: self.preset.max_length] for r in rows]
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return BatchFeature({"input_ids": ids, "attention_mask": mask, **image_part})

    def forward_regions(self, prepared: Any) -> Any:
        """(K, dim) L2-normalised region vectors of a :meth:`prepare_regions` batch (one image forward)."""
        return fwd.forward_shared_prefix(self.model, self.preset.positions, self._on_device(prepared))

    def encode_regions(self, image: Any, boxes: Sequence[Box], *, instruction: str | None = None,
                       text: str | None = None, latlon: tuple[float, float] | None = None,
                       batch_size: int = 32) -> np.ndarray:
        """Embed K boxes on one image; equals ``encode(region_inputs(...))``, float32 (K, dim)."""
        import torch

        boxes = list(boxes)
        out = np.zeros((len(boxes), self.dim), dtype=np.float32)
        with _eval_mode(self.model), torch.inference_mode():
            for s in range(0, len(boxes), batch_size):
                prepared = self.prepare_regions(image, boxes[s : s + batch_size], instruction=instruction,
                                                text=text, latlon=latlon)
                out[s : s + batch_size] = self.forward_regions(prepared).float().cpu().numpy()
        return out

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path, *, instructions: dict[str, str] | None = None) -> Path:
        """Write HF layout + geovec.json that ``load_embedder(directory)`` loads as is.

        Any LoRA is merged first; the model's instructions (or ``instructions``) and its image
        policy are saved with it, so an adapted model carries its own prompts and image size.
        """
        out = Path(directory).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out, safe_serialization=True)
        self.processor.save_pretrained(out)
        meta = {"preset": self.preset.name, "parent": self.checkpoint_id, "image": self.preset.image.to_dict(),
                "instructions": {**self.instructions, **(instructions or {})}}
        (out / META_FILE).write_text(json.dumps(meta, indent=2))
        return out


class _eval_mode:  # noqa: N801 - used like a function
    """Eval mode for a block, restoring the previous mode after."""

    def __init__(self, model: Any) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)


def _expand(text: str, n_tokens: int) -> str:
    """The image placeholder expanded to the image's token count, as the processor does."""
    return text.replace(QWEN2VL_IMAGE, "\x00").replace("\x00", QWEN2VL_IMAGE * n_tokens)


def _device_patches(processor: Any, preset: Preset) -> bool:
    """Whether this preset's images can be patchified on the device (a fixed size the processor keeps)."""
    if preset.image.kind != "fixed" or preset.image.size is None:
        return False
    h, w = preset.image.processed_hw(0, 0)
    return h == w and pixels.device_patches_ok(processor.image_processor, int(h))


def configure_processor(processor: Any, preset: Preset) -> None:
    """Set the image processor's pixel bounds from the preset's image policy (not the checkpoint's)."""
    ip = processor.image_processor
    policy = preset.image
    lo, hi = policy.min_tokens * 28 * 28, policy.max_tokens * 28 * 28
    if policy.kind == "fixed":  # the image arrives at its processed size, which the bounds must keep
        h, w = policy.processed_hw(0, 0)
        lo, hi = min(lo, h * w), max(hi, h * w)
    ip.min_pixels, ip.max_pixels = lo, hi
    ip.size = {"shortest_edge": lo, "longest_edge": hi}


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config
