"""No input makes the model run past its context, and no request holds the model for long."""

from __future__ import annotations

import threading
import time

import pytest

from geovec.backend.errors import BusyError
from geovec.backend.model.truncate import context_limit
from geovec.backend.types import EmbedInput


def test_long_text_is_cut_to_the_models_context(tiny_embedder) -> None:
    limit = context_limit(tiny_embedder.model, tiny_embedder.processor.tokenizer)
    assert 0 < limit <= 4096
    text = "storage tanks near the harbour " * 2000  # far over the context
    instruction = tiny_embedder.instructions["text_query"]
    batch = tiny_embedder.prepare([EmbedInput(instruction, text=text)])
    assert batch["input_ids"].shape[1] <= limit
    short = tiny_embedder.prepare([EmbedInput(instruction, text="storage tanks")])
    assert short["input_ids"].shape[1] < 64  # short text untouched
    vec = tiny_embedder.encode([EmbedInput(instruction, text=text)])
    assert vec.shape == (1, tiny_embedder.dim)


def test_a_request_waits_for_the_busy_model_only_so_long(tiny_embedder) -> None:
    from geovec.backend.server.state import SerialisedEmbedder

    lock = threading.Lock()
    waiters = threading.BoundedSemaphore(1)
    emb = SerialisedEmbedder(tiny_embedder, lock, wait_s=0.5, waiters=waiters)
    query = [EmbedInput(tiny_embedder.instructions["text_query"], text="water")]
    with lock:  # a long forward pass elsewhere
        t0 = time.monotonic()
        with pytest.raises(BusyError, match="busy for"):
            emb.encode(query)
        assert time.monotonic() - t0 < 5
        waiters.acquire()  # the one waiting slot is taken: refused at once
        t0 = time.monotonic()
        with pytest.raises(BusyError, match="too many requests"):
            emb.encode(query)
        assert time.monotonic() - t0 < 0.2
        waiters.release()
    assert emb.encode(query).shape == (1, tiny_embedder.dim)


def test_many_inputs_release_the_model_between_batches(tiny_embedder) -> None:
    """A 24-input encode holds the lock per batch of 8, so another request gets a turn in between."""
    from geovec.backend.server.state import SerialisedEmbedder

    lock = threading.Lock()
    emb = SerialisedEmbedder(tiny_embedder, lock, wait_s=30)
    inputs = [EmbedInput(tiny_embedder.instructions["text_query"], text=f"water {i}") for i in range(24)]
    turns: list[float] = []

    def other() -> None:
        while not done.is_set():
            if lock.acquire(timeout=0.001):
                turns.append(time.monotonic())
                lock.release()
                time.sleep(0.001)

    done = threading.Event()
    t = threading.Thread(target=other)
    t.start()
    try:
        out = emb.encode(inputs, batch_size=8)
    finally:
        done.set()
        t.join()
    assert out.shape == (24, tiny_embedder.dim)
    direct = tiny_embedder.encode(inputs, batch_size=8)
    assert abs(out - direct).max() < 1e-4
    assert turns
