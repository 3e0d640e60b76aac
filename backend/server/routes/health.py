"""``GET /v1/health``: the only route without a token (the plugin polls it at start-up).

Without the token it says only what a stranger may know: status and version. With it, also the
device, the GPU and the model (whose local path is none of a stranger's business).
"""

from __future__ import annotations

import sys

from fastapi import APIRouter, Request

from ... import __version__
from ...schemas import ErrorBody, Health
from ..auth import AUTHENTICATED
from ..deps import State

router = APIRouter(tags=["health"])


def health_of(state: State) -> Health:
    """Version, device, GPU (only if torch is already imported: never imports it) and model state."""
    gpu_name = gpu_free = None
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpu_name = torch.cuda.get_device_name(0)
                gpu_free = round(torch.cuda.mem_get_info(0)[0] / 2**20, 1)
        except Exception:  # noqa: BLE001 - health must answer whatever the driver does
            pass
    slot = state.models
    return Health(version=__version__, device=slot.device(), gpu_name=gpu_name, gpu_free_mb=gpu_free,
                  model_loaded=slot.loaded, model=slot.spec)


@router.get("/health", response_model=Health, response_model_exclude_none=True,
            responses={403: {"model": ErrorBody}})
async def health(state: State, request: Request) -> Health:
    """Status and version; with the bearer token also device, GPU and model."""
    if not request.scope.get(AUTHENTICATED):
        return Health(version=__version__)
    return health_of(state)
