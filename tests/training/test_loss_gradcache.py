"""InfoNCE and GradCache: values, gradients, distributed gather (gloo, 2 processes)."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from geovec.training.gradcache import GradCache
from geovec.training.loss import InfoNCELoss


def _unit(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1)


def test_infonce_matches_hand_computation() -> None:
    q, d = _unit(4, 8, 0), _unit(4, 8, 1)
    loss = InfoNCELoss(temperature=0.5)(q, d)
    logits = (q @ d.T) / 0.5
    expected = -sum(math.log(torch.softmax(logits[i], 0)[i].item()) for i in range(4)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_infonce_perfect_pairs_low_loss_and_hard_negatives_raise_it() -> None:
    q = _unit(6, 16, 2)
    fn = InfoNCELoss(temperature=0.02)
    assert fn(q, q).item() < 1e-3
    harder = fn(q, q, hard_negatives=q.clone())  # each positive duplicated as a negative
    assert harder.item() == pytest.approx(math.log(2), rel=1e-3)


def test_symmetric_adds_reverse_direction() -> None:
    q, d = _unit(5, 8, 3), _unit(5, 8, 4)
    one = InfoNCELoss(0.1)(q, d)
    rev = InfoNCELoss(0.1)(d, q)
    both = InfoNCELoss(0.1, symmetric=True)(q, d)
    assert both.item() == pytest.approx(0.5 * (one.item() + rev.item()), rel=1e-5)


def test_bad_shapes_and_temperature_are_refused() -> None:
    from geovec.backend.errors import InputError

    with pytest.raises(InputError, match="temperature"):
        InfoNCELoss(0.0)
    with pytest.raises(InputError, match="n, dim"):
        InfoNCELoss()(_unit(3, 4, 0), _unit(2, 4, 0))


class _Enc(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 8)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", [1, 3, 16])
@pytest.mark.parametrize("with_negatives", [False, True])
def test_gradcache_equals_full_batch_step(chunk: int, with_negatives: bool) -> None:
    g = torch.Generator().manual_seed(5)
    xq, xd, xn = (torch.randn(10, 12, generator=g) for _ in range(3))
    loss_fn = InfoNCELoss(0.05, symmetric=True)
    # reference: one plain full-batch step (same dropout masks thanks to a fixed seed per forward)
    ref = _Enc().train()
    torch.manual_seed(123)
    outs = [ref(xq), ref(xd)] + ([ref(xn)] if with_negatives else [])
    ref_loss = loss_fn(*outs)
    ref_loss.backward()
    ref_grads = _grads(ref)

    model = _Enc().train()

    def split(x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(x, chunk))

    if chunk == 16:  # one chunk: dropout RNG sequence matches the reference exactly
        torch.manual_seed(123)
        gc_loss = GradCache(model, loss_fn).step(split(xq), split(xd), split(xn) if with_negatives else None)
        assert gc_loss == pytest.approx(ref_loss.item(), rel=1e-5)
        for a, b in zip(_grads(model), ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        return
    # with several chunks the dropout masks differ from the reference; compare against a
    # plain step that replays GradCache's masks: switch dropout off on both sides instead.
    ref.eval()
    ref.zero_grad()
    loss_fn(*[ref(x) for x in ([xq, xd, xn] if with_negatives else [xq, xd])]).backward()
    model.eval()
    GradCache(model, loss_fn).step(split(xq), split(xd), split(xn) if with_negatives else None)
    for a, b in zip(_grads(model), _grads(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_single_chunk_is_one_forward_per_group_and_a_full_batch_step(with_negatives: bool) -> None:
    g = torch.Generator().manual_seed(7)
    xq, xd, xn = (torch.randn(6, 12, generator=g) for _ in range(3))
    loss_fn = InfoNCELoss(0.05)
    ref = _Enc().eval()
    ref_loss = loss_fn(ref(xq), ref(xd), ref(xn) if with_negatives else None)
    ref_loss.backward()
    model = _Enc().eval()
    model.load_state_dict({k: v for k, v in ref.state_dict().items()})
    calls: list[int] = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        calls.append(int(torch.is_grad_enabled()))
        return model(x)

    loss = GradCache(encode, loss_fn).step([xq], [xd], [xn] if with_negatives else None)
    assert calls == [1] * (3 if with_negatives else 2)  # no grad-free caching pass, no second forward
    assert loss == pytest.approx(ref_loss.item())
    for a, b in zip(_grads(model), _grads(ref), strict=True):
        torch.testing.assert_close(a, b)


def test_gradcache_replays_dropout_masks() -> None:
    """With dropout on, the re-forward must reuse the no-grad pass's masks (RandContext)."""
    g = torch.Generator().manual_seed(9)
    xq, xd = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g)
    model = _Enc().train()
    seen: list[torch.Tensor] = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        seen.append(out.detach().clone())
        return out

    GradCache(encode, InfoNCELoss(0.1)).step(list(torch.split(xq, 3)), list(torch.split(xd, 3)))
    half = len(seen) // 2
    for first, again in zip(seen[:half], seen[half:], strict=True):
        torch.testing.assert_close(first, again)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, q: torch.Tensor, d: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = q.shape[0] // world
        ql = q[rank * n : (rank + 1) * n].clone().requires_grad_()
        dl = d[rank * n : (rank + 1) * n].clone().requires_grad_()
        loss = InfoNCELoss(0.1, symmetric=True)(ql, dl)
        loss.backward()
        # DDP averages gradients over ranks: emulate by dividing by the world size
        out[rank] = (loss.item() / world, (ql.grad / world).clone(), (dl.grad / world).clone())
    finally:
        dist.destroy_process_group()


def test_distributed_gather_gives_global_batch_gradients() -> None:
    q, d = _unit(8, 6, 11), _unit(8, 6, 12)
    ref_q, ref_d = q.clone().requires_grad_(), d.clone().requires_grad_()
    ref = InfoNCELoss(0.1, symmetric=True)(ref_q, ref_d)
    ref.backward()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        mp.start_processes(_worker, args=(2, _free_port(), q, d, out), nprocs=2, start_method="spawn")
        results = dict(out)
    for rank in (0, 1):
        loss, gq, gd = results[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        torch.testing.assert_close(gq, ref_q.grad[rank * 4 : (rank + 1) * 4])
        torch.testing.assert_close(gd, ref_d.grad[rank * 4 : (rank + 1) * 4])


def test_groups_mask_same_class_documents() -> None:
    q, d = _unit(4, 8, 21), _unit(4, 8, 22)
    d[1] = q[0]  # a same-class document identical to query 0: a false negative unless masked
    groups = torch.tensor([0, 0, 1, 2])
    masked = InfoNCELoss(0.1)(q, d, groups=groups)
    logits = (q @ d.T) / 0.1
    logits[0, 1] = logits[1, 0] = float("-inf")
    expected = F.cross_entropy(logits, torch.arange(4))
    assert masked.item() == pytest.approx(expected.item(), rel=1e-5)
    assert InfoNCELoss(0.1)(q, d).item() > masked.item() + 0.5
