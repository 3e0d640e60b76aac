"""GradCache (Gao et al., 2021): contrastive steps whose batch is independent of memory.

1. Forward every chunk without grad to get representations (RNG state remembered).
2. Compute the loss on the detached representations; backward gives d loss / d rep.
3. Re-forward each chunk with grad (same RNG state) and back-propagate
   ``(rep * cached_grad).sum()``: the parameter gradients equal a full-batch step.

When every input group is a single chunk there is nothing to cache: one forward
with grad of all groups and one backward (no second forward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

Encode = Callable[[Any], torch.Tensor]


class RandContext:
    """Capture the CPU (and CUDA) RNG state now; restore it inside ``with``."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self._fork: contextlib.ExitStack | None = None

    def __enter__(self) -> None:
        self._fork = contextlib.ExitStack()
        devices = list(range(torch.cuda.device_count())) if self.cuda is not None else []
        self._fork.enter_context(torch.random.fork_rng(devices=devices))
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def __exit__(self, *exc: object) -> None:
        assert self._fork is not None
        self._fork.close()
        self._fork = None


class GradCache:
    """Run one contrastive step over chunked inputs.

    Args:
        encode: maps one prepared chunk to its (m, dim) embeddings, with grad.
        loss_fn: ``loss_fn(q, d)`` or ``loss_fn(q, d, negatives)`` -> scalar.
        no_sync: optional context factory (e.g. ``ddp_model.no_sync``) entered for every
            chunk's backward but the last, so DDP all-reduces once per step.
        encode_many: optional: maps a list of prepared chunks to their embeddings in ONE
            forward call; single-chunk steps use it so that DDP sees one forward before the
            backward (default: ``encode`` on each chunk, fine without DDP).
    """

    def __init__(
        self,
        encode: Encode,
        loss_fn: Callable[..., torch.Tensor],
        *,
        no_sync: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        encode_many: Callable[[list[Any]], list[torch.Tensor]] | None = None,
    ) -> None:
        self.encode = encode
        self.loss_fn = loss_fn
        self.no_sync = no_sync
        self.encode_many = encode_many

    def _reps(self, chunks: Sequence[Any]) -> tuple[torch.Tensor, list[tuple[RandContext, int]]]:
        reps, states = [], []
        with torch.no_grad():
            for chunk in chunks:
                state = RandContext()
                out = self.encode(chunk)
                reps.append(out)
                states.append((state, out.shape[0]))
        return torch.cat(reps, dim=0), states

    def _plain_step(self, chunks: list[Any]) -> float:
        """One forward with grad (every group), one backward."""
        reps = self.encode_many(chunks) if self.encode_many is not None else [self.encode(c) for c in chunks]
        loss = self.loss_fn(*reps)
        loss.backward()
        return float(loss.detach())

    def step(
        self,
        query_chunks: Sequence[Any],
        doc_chunks: Sequence[Any],
        negative_chunks: Sequence[Any] | None = None,
    ) -> float:
        """Accumulate the full-batch gradient into the parameters; return the loss value."""
        groups = [list(query_chunks), list(doc_chunks)] + ([list(negative_chunks)] if negative_chunks else [])
        if all(len(g) == 1 for g in groups):
            return self._plain_step([g[0] for g in groups])
        cached = [self._reps(g) for g in groups]
        reps = [r.detach().requires_grad_() for r, _ in cached]
        loss = self.loss_fn(*reps)
        loss.backward()
        pending: list[tuple[Any, RandContext, torch.Tensor]] = []
        for chunks, (_, states), rep in zip(groups, cached, reps, strict=True):
            assert rep.grad is not None
            start = 0
            for chunk, (state, n) in zip(chunks, states, strict=True):
                pending.append((chunk, state, rep.grad[start : start + n]))
                start += n
        for i, (chunk, state, grad) in enumerate(pending):
            last = i == len(pending) - 1
            ctx = self.no_sync() if (self.no_sync is not None and not last) else contextlib.nullcontext()
            with ctx, state:
                out = self.encode(chunk)
                torch.sum(out * grad.to(out.dtype)).backward()
        return float(loss.detach())
