"""InfoNCE with in-batch negatives, optional hard negatives, optional symmetric term.

Embeddings are gathered across devices when ``torch.distributed`` is initialised
(the local shard keeps its gradient, as in open_clip / VLM2Vec), so negatives come
from the global batch; on one device the code path is the same minus the gather.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..backend.errors import InputError


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order; only the local shard carries grad.

    Every rank must pass the same shape. On one device returns ``x`` unchanged.
    """
    if not _dist_ready():
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


class InfoNCELoss(nn.Module):
    """Contrastive loss between queries and their positive documents.

    Args:
        temperature: softmax temperature (VLM2Vec uses 0.02).
        symmetric: also add the document -> query direction (in-batch docs only).
        gather: gather embeddings across ranks when torch.distributed is initialised.
    """

    def __init__(self, temperature: float = 0.02, *, symmetric: bool = False, gather: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}", "use e.g. 0.02")
        self.temperature = float(temperature)
        self.symmetric = symmetric
        self.gather = gather

    def forward(
        self,
        q: torch.Tensor,
        d: torch.Tensor,
        hard_negatives: torch.Tensor | None = None,
        *,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean InfoNCE over the (global) batch.

        Args:
            q: (n, dim) query embeddings (L2-normalised).
            d: (n, dim) positive document embeddings, ``d[i]`` pairs with ``q[i]``.
            hard_negatives: optional (n * k, dim) or (n, k, dim) extra negatives, shared
                by every query of the global batch.
            groups: optional (n,) integer class ids; an in-batch document of the same
                group as a query (other than its own positive) is not used as a negative
                (many pairs share one class text, e.g. "forest").

        Returns:
            A scalar. Under torch.distributed the loss is scaled by the world size so
            that DDP's gradient averaging yields the gradient of the global loss.
        """
        if q.ndim != 2 or q.shape != d.shape:
            raise InputError(
                f"q and d must both be (n, dim), got {tuple(q.shape)} and {tuple(d.shape)}",
                "pass one positive document per query",
            )
        world = dist.get_world_size() if (self.gather and _dist_ready()) else 1
        if world > 1:
            q, d = gather_with_grad(q), gather_with_grad(d)
        docs = d
        if hard_negatives is not None:
            neg = hard_negatives.reshape(-1, d.shape[-1])
            if world > 1:
                neg = gather_with_grad(neg)
            docs = torch.cat([d, neg], dim=0)
        logits = q.float() @ docs.float().T / self.temperature
        n = q.shape[0]
        labels = torch.arange(n, device=q.device)
        if groups is not None:
            g = groups.to(q.device).reshape(-1)
            if world > 1:
                g = gather_with_grad(g)
            same = (g[:, None] == g[None, :]) & ~torch.eye(n, dtype=torch.bool, device=q.device)
            mask = torch.zeros_like(logits, dtype=torch.bool)
            mask[:, :n] = same
            logits = logits.masked_fill(mask, float("-inf"))
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits[:, :n].T, labels))
        return loss * world
