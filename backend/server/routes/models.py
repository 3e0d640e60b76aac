"""``/v1/models``: presets and local checkpoints; load / unload the one resident model."""

from __future__ import annotations

from fastapi import APIRouter

from ...schemas import Health, ModelInfo, ModelLoadRequest
from ..deps import ERRORS, State
from .health import health_of

router = APIRouter(prefix="/models", tags=["models"], responses=ERRORS)


@router.get("", response_model=list[ModelInfo])
def list_models(state: State) -> list[ModelInfo]:
    """Presets, checkpoints under ``<data dir>/models`` and the configured/loaded model."""
    slot = state.models
    out: dict[str, ModelInfo] = {}
    try:
        from ...model.presets import PRESETS

        for name, preset in PRESETS.items():
            out[name] = ModelInfo(name=name, kind="preset", description=f"{preset.base_model}"
                                  + (f" + {preset.adapter}" if preset.adapter else ""))
    except ImportError:
        pass
    root = state.settings.models_dir
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "config.json").is_file():
                out[str(d)] = ModelInfo(name=str(d), kind="local", description="local checkpoint")
    for spec in (state.settings.model, slot.spec):
        if spec and spec not in out:
            kind = "local" if spec.startswith(("/", "~", ".")) else "hub"
            out[spec] = ModelInfo(name=spec, kind=kind, description="configured with --model")
    if slot.loaded and slot.spec in out:
        out[slot.spec].loaded = True  # type: ignore[index]
    return list(out.values())


@router.post("/load", response_model=Health)
def load_model(body: ModelLoadRequest, state: State) -> Health:
    """Load ``model`` (replacing the resident one if no job uses it); it stays resident."""
    state.models.get(body.model, device=body.device)
    return health_of(state)


@router.post("/unload", response_model=Health)
def unload_model(state: State) -> Health:
    """Free the resident model (refused while a job uses it); the next query loads one again."""
    state.models.unload()
    return health_of(state)
