"""Contrastive fine-tuning of the backend's embedder (full or LoRA), resumable.

The trainer loads the model through :func:`geovec.backend.model.embedder.load_embedder`
and encodes with the same ``prepare`` (processor + preset prompt) and ``forward``
(last-token pooling, L2 norm) as indexing, so a checkpoint it writes
(``Embedder.save``: HF layout + geovec.json) loads with ``geovec index --model DIR``.

Output directory::

    base-model/            the tiny random model when ``model: tiny`` (written once)
    checkpoints/step-N/    Embedder.save() + trainer_state.pt (optimizer, scheduler, RNG)
    model/                 the final checkpoint (LoRA merged; adapter/ beside it)
    train_log.jsonl        one JSON object per logged step / evaluation
    report.json, report.md, figures/
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backend.errors import InputError
from .config import Config
from .data.dataset import TrainData, build_train_data
from .data.vector_labels import Pair
from .eval.class_retrieval import class_retrieval
from .gradcache import GradCache
from .loss import InfoNCELoss

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"


def resolve_base_model(spec: str, output_dir: Path, seed: int = 0) -> str:
    """``tiny`` -> a tiny random model written once under the output dir; else unchanged."""
    if spec != "tiny":
        return spec
    from ..backend.model.tiny import write_tiny_model

    target = output_dir / "base-model"
    if not (target / "config.json").exists():
        write_tiny_model(target, seed=seed)
    return str(target)


def torch_module(embedder: Any) -> torch.nn.Module:
    """The trainable nn.Module behind an Embedder."""
    model = getattr(embedder, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise InputError("the embedder exposes no torch model (embedder.model)", "use load_embedder()")
    return model


def init_distributed() -> tuple[int, int]:
    """(rank, world) from torchrun's environment; initialises the process group once.

    On CUDA each process takes the GPU ``LOCAL_RANK`` (``torch.cuda.set_device`` before the
    process group exists, so NCCL binds every rank to its own device); on CPU ranks use gloo.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


class EncoderModule(torch.nn.Module):
    """The embedder's encoding forward as one module, so DistributedDataParallel can wrap it.

    It registers only the backbone the embedding uses (not the unused LM head), so DDP sees
    a gradient for every trainable parameter it syncs.
    """

    def __init__(self, embedder: Any) -> None:
        super().__init__()
        from ..backend.model.forward import backbone

        self.backbone = backbone(torch_module(embedder))
        self._embedder = [embedder]  # a list: not registered as a submodule twice

    def forward(self, batches: list[Any]) -> list[torch.Tensor]:
        """The embeddings of several prepared batches in one call (one DDP forward for all of them)."""
        return [self._embedder[0].forward(b) for b in batches]


def replica_digest(params: list[torch.nn.Parameter]) -> str:
    """SHA-256 of the trainable parameters' bytes: equal on every rank when replicas are in sync."""
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class BalancedSampler:
    """Batches that cycle through the classes so each appears about equally often."""

    def __init__(self, pairs: list[Pair], seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.by_class: dict[str, list[int]] = {}
        for i, p in enumerate(pairs):
            self.by_class.setdefault(p.label, []).append(i)
        self.classes = sorted(self.by_class)
        self._queues: dict[str, list[int]] = {c: [] for c in self.classes}

    def next_of(self, c: str) -> int:
        if not self._queues[c]:
            self._queues[c] = list(self.rng.permutation(self.by_class[c]))
        return int(self._queues[c].pop())

    def batch(self, size: int) -> list[int]:
        order = list(self.rng.permutation(self.classes))
        return [self.next_of(order[i % len(order)]) for i in range(size)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "queues": self._queues}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._queues = {k: list(v) for k, v in state["queues"].items()}


class Trainer:
    """Runs ``cfg.train.steps`` contrastive steps on ``data`` and evaluates before / after."""

    def __init__(self, cfg: Config, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.log_path = self.out / "train_log.jsonl"
        self.rank, self.world = init_distributed()
        self.main = self.rank == 0

    # ------------------------------------------------------------------ setup
    def _device(self) -> str:
        d = self.cfg.train.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        if d == "cuda" and self.world > 1:
            d = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return d

    def _load(self, spec: str) -> Any:
        from ..backend.model.embedder import load_embedder

        return load_embedder(spec, device=self._device(), torch_dtype=torch.float32, image_size=self.cfg.data.image_size)

    def _setup_model(self, embedder: Any, resume_dir: Path | None) -> torch.nn.Module:
        model: Any = torch_module(embedder)
        t, lora = self.cfg.train, self.cfg.lora
        cuda = self._device().startswith("cuda")
        if lora.enabled:
            from peft import LoraConfig, PeftModel, get_peft_model

            if resume_dir is not None and (resume_dir / "adapter").is_dir():
                model = PeftModel.from_pretrained(model, str(resume_dir / "adapter"), is_trainable=True)
            else:
                pcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                  target_modules=list(lora.targets))
                model = get_peft_model(model, pcfg)
            embedder.model = model
        else:  # full fine-tuning: every weight, also those a merged adapter's load left frozen
            model.requires_grad_(True)
        if t.gradient_checkpointing if t.gradient_checkpointing is not None else cuda:
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(base, "enable_input_require_grads"):
                base.enable_input_require_grads()
        model.train()
        return model

    # ------------------------------------------------------------------ checkpoints
    def _checkpoints(self) -> list[Path]:
        root = self.out / "checkpoints"
        done = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()] if root.exists() else []
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def _save_checkpoint(self, embedder: Any, step: int, state: dict[str, Any]) -> Path:
        final = self.out / "checkpoints" / f"step-{step}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self._save_model(embedder, tmp)
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint exists whole or not at all
        for old in self._checkpoints()[: -self.cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _save_model(self, embedder: Any, directory: Path) -> None:
        """HF layout + geovec.json through Embedder.save; LoRA: adapter/ and the merged model."""
        model: Any = torch_module(embedder)
        directory.mkdir(parents=True, exist_ok=True)
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(directory / "adapter"))
            # merge a copy so the model being trained keeps its adapter layers
            embedder.model = copy.deepcopy(model).merge_and_unload()
            try:
                embedder.save(directory)
            finally:
                embedder.model = model
        else:
            embedder.save(directory)

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with self.log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def evaluate(self, embedder: Any, data: TrainData, split: str = "reported") -> dict[str, Any]:
        """Class retrieval on the reported split (test when the config has one) or on ``validation``.

        The result carries a 95 % interval that resamples polygons (``p_at_1_ci95``).
        """
        _, points, images = data.reported if split == "reported" else ("validation", data.val_points, data.val_images)
        model = torch_module(embedder)
        was_training = model.training
        model.eval()
        try:
            return class_retrieval(
                embedder, images, [p.label for p in points], data.classes, template=self.cfg.data.caption_template,
                batch_size=self.cfg.eval.batch_size, groups=[p.fid for p in points],
            )
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ main loop
    def run(self, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Train ``cfg.train.steps`` steps (resuming from the last checkpoint), save and evaluate."""
        t = self.cfg.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        _seed_all(t.seed)
        started = time.perf_counter()
        ckpts = self._checkpoints()
        run = self._start(ckpts[-1] if ckpts else None)
        loop = self._loop(run)
        self._train(run, loop, started, on_step)
        return self._finish(run, loop, started)

    def _start(self, resume_dir: Path | None) -> _Run:
        """The base model, the data and the report; the 'before' evaluation on a fresh run."""
        cfg = self.cfg
        if self.main:
            resolve_base_model(cfg.model, self.out, seed=cfg.train.seed)
        _barrier(self.world)
        base = resolve_base_model(cfg.model, self.out, seed=cfg.train.seed)  # written by rank 0 by now
        embedder = self._load(str(resume_dir) if resume_dir and not cfg.lora.enabled else base)
        image_size = cfg.data.image_size or int(embedder.preset.image_size)
        data = build_train_data(cfg.data, dict(embedder.instructions), image_size)
        report: dict[str, Any] = {"rank": self.rank, "world_size": self.world, "config": cfg.to_dict(),
                                  "split": data.split, "classes": data.classes, "base_model": base,
                                  "device": self._device(), "reported_split": data.reported[0]}
        run = _Run(embedder, data, report, resume_dir)
        if resume_dir is None:
            if self.main:
                self.log_path.unlink(missing_ok=True)
            if cfg.eval.before and self.main:
                self._evaluate_into(run, "before", step=0)
        return run

    def _evaluate_into(self, run: _Run, when: str, step: int) -> None:
        """Evaluate on the reported split (and on validation when there is a test split) into the report."""
        report = run.report
        report[when] = self.evaluate(run.embedder, run.data)
        self._log({"event": "eval", "step": step, **_flat(report[when])})
        log.info("%s: %s P@1 %.3f", when, run.data.reported[0], report[when]["p_at_1"])
        if run.data.test_points:  # validation is what choices (steps, learning rate) are made on
            report[f"val_{when}"] = self.evaluate(run.embedder, run.data, "validation")
            self._log({"event": "val", "step": step, **_flat(report[f"val_{when}"])})

    def _loop(self, run: _Run) -> _Loop:
        """Model (LoRA or full), optimizer, schedule, sampler and DDP wrapper; restored when resuming."""
        t = self.cfg.train
        if t.batch_size % self.world:
            raise InputError(f"train.batch_size {t.batch_size} does not split over {self.world} processes",
                             f"use a multiple of {self.world}")
        model = self._setup_model(run.embedder, run.resume_dir)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(t.warmup_steps, max(t.steps, 1)))
        # every rank draws the same global batch and keeps its shard: N ranks = one rank on the full batch
        loop = _Loop(params, opt, sched, BalancedSampler(run.data.train_pairs, t.seed))
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            dev = torch.device(self._device())
            # find_unused_parameters: a text-only chunk leaves the vision tower out of its graph; DDP then
            # all-reduces the gradient the tower accumulated in the step's earlier (no_sync) chunks
            loop.ddp = DistributedDataParallel(EncoderModule(run.embedder), find_unused_parameters=True,
                                               device_ids=[dev.index] if dev.type == "cuda" else None)
        if run.resume_dir is not None:
            state = torch.load(run.resume_dir / STATE_FILE, weights_only=False)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            loop.sampler.load_state_dict(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
            loop.step = int(state["step"])
            run.report["before"] = state.get("before")
            if state.get("val_before"):
                run.report["val_before"] = state["val_before"]
            log.info("resumed from %s at step %d", run.resume_dir, loop.step)
        return loop

    def _train(self, run: _Run, loop: _Loop, started: float,
               on_step: Callable[[int, float], None] | None) -> None:
        """The contrastive steps, from ``loop.step`` to ``cfg.train.steps``, with logs and checkpoints."""
        t, embedder, data = self.cfg.train, run.embedder, run.data
        per_rank = t.batch_size // self.world
        shard = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        loss_fn = InfoNCELoss(t.temperature, symmetric=t.symmetric)
        groups_index = {c: i for i, c in enumerate(data.classes)}
        cuda = self._device().startswith("cuda")
        bf16 = t.bf16 if t.bf16 is not None else cuda
        ddp = loop.ddp
        forward_many = ddp if ddp is not None else (lambda batches: [embedder.forward(b) for b in batches])

        def encode_many(batches: list[Any]) -> list[torch.Tensor]:
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16):
                return [x.float() for x in forward_many(batches)]

        def encode(batch: Any) -> torch.Tensor:
            return encode_many([batch])[0]

        def prepare(items: list[Pair], side: str) -> list[Any]:
            return [embedder.prepare([getattr(p, side) for p in items[i : i + t.chunk_size]])
                    for i in range(0, len(items), t.chunk_size)]

        bar = _progress(t.steps, loop.step, self.progress and self.main)
        while loop.step < t.steps:
            t0 = time.perf_counter()
            everyone = [data.train_pairs[i] for i in loop.sampler.batch(t.batch_size)]
            pairs = everyone[shard]
            groups = torch.tensor([groups_index[p.label] for p in pairs])
            n_chunks = None
            if t.hard_negatives:
                negs = [data.train_pairs[loop.sampler.next_of(_other(data.classes, p.label, loop.sampler.rng))]
                        for p in everyone][shard]
                n_chunks = prepare(negs, "doc")
            q_chunks, d_chunks = prepare(pairs, "query"), prepare(pairs, "doc")
            loop.opt.zero_grad(set_to_none=True)
            # DDP all-reduces (averages) the gradients in the step's last backward; the loss is scaled by
            # the world size so that the average is the global batch's gradient, and unscaled for the log
            loss = GradCache(encode, functools.partial(loss_fn, groups=groups), encode_many=encode_many,
                             no_sync=ddp.no_sync if ddp is not None else None).step(q_chunks, d_chunks, n_chunks)
            loss /= self.world
            gnorm = float(torch.nn.utils.clip_grad_norm_(loop.params, t.max_grad_norm))
            loop.opt.step()
            loop.sched.step()
            loop.step += 1
            step, dt = loop.step, time.perf_counter() - t0
            if on_step:
                on_step(step, loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            if step % t.log_every == 0 or step == t.steps or step == 1:
                self._log({"event": "train", "step": step, "loss": loss, "lr": loop.sched.get_last_lr()[0],
                           "grad_norm": gnorm, "samples_per_s": len(pairs) / dt,
                           "elapsed_s": time.perf_counter() - started})
            if step % t.checkpoint_every == 0 and step < t.steps and self.main:
                self._save_checkpoint(embedder, step, {
                    "step": step, "optimizer": loop.opt.state_dict(), "scheduler": loop.sched.state_dict(),
                    "sampler": loop.sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "before": run.report.get("before"), "val_before": run.report.get("val_before")})
        if bar is not None:
            bar.close()

    def _finish(self, run: _Run, loop: _Loop, started: float) -> dict[str, Any]:
        """Check the replicas agree, save the final model (rank 0) and evaluate it."""
        report, final = run.report, self.out / "model"
        report["model_dir"] = str(final)
        report["train_wall_s"] = time.perf_counter() - started
        report["replica_digests"] = _gather_digests(replica_digest(loop.params), self.world)
        if len(set(report["replica_digests"])) != 1:
            log.error("the %d ranks ended with different weights: %s", self.world, report["replica_digests"])
        if not self.main:
            _barrier(self.world)
            return report
        shutil.rmtree(final, ignore_errors=True)
        self._save_model(run.embedder, final)
        if self.cfg.eval.after:
            self._evaluate_into(run, "after", step=loop.step)
        report["wall_s"] = time.perf_counter() - started
        _barrier(self.world)
        return report


@dataclass
class _Run:
    """What one training run carries from start to finish."""

    embedder: Any
    data: TrainData
    report: dict[str, Any]
    resume_dir: Path | None


@dataclass
class _Loop:
    """The optimisation state of the step loop."""

    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    sampler: BalancedSampler
    ddp: Any = None
    step: int = 0


def _gather_digests(digest: str, world: int) -> list[str]:
    """Every rank's parameter digest, in rank order (one element on a single process)."""
    if world == 1:
        return [digest]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, digest)
    return [str(d) for d in out]


def _other(classes: list[str], label: str, rng: np.random.Generator) -> str:
    others = [c for c in classes if c != label]
    return str(rng.choice(others))


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step")
