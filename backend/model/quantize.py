"""``--dtype int8``: the full-size model on a CPU with its linear layers quantised to int8.

PyTorch's dynamic quantisation (``torch.ao.quantization.quantize_dynamic``)
replaces every ``nn.Linear`` with an int8 one, per output channel: weights are
stored as int8, activations are quantised on the fly per batch, the matrix
products run in int8 (FBGEMM) and come back as fp32. Everything else (patch
embedding, norms, rotary, token embeddings) stays fp32. CPU only.

PyTorch marks this API deprecated in favour of ``torchao``; it still ships and
runs in the PyTorch this project pins, so no new dependency is needed. Its
deprecation warnings are silenced here, once, at load.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

log = logging.getLogger(__name__)

#: The dtype name recorded in an index's model identity for a quantised model.
INT8 = "int8"


def quantize_int8(model: Any) -> Any:
    """``model`` (fp32, on the CPU) with its ``nn.Linear`` layers replaced by dynamic int8 ones, in place."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    t0 = time.perf_counter()
    n = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    model.geovec_dtype = INT8
    log.info("quantised %d linear layers to int8 (dynamic, per channel) in %.1f s", n, time.perf_counter() - t0)
    return model


def dtype_label(model: Any, fallback: str) -> str:
    """``int8`` for a model quantised here, else ``fallback`` (the dtype of its parameters)."""
    return str(getattr(model, "geovec_dtype", None) or fallback)
