"""The embedding model: presets (checkpoint conventions), the Embedder and the tiny local model."""

from .presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "Preset", "get_preset"]
