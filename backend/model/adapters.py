"""LoRA adapters merged into the base model at load, strictly.

VLM2Vec's Qwen2-VL adapters were saved with transformers releases in which the
decoder lived at ``model.layers`` and the vision tower at ``visual``; since
transformers 4.52 they live at ``model.language_model`` and ``model.visual``. Loaded
as is, peft would *warn* about missing keys and leave those layers un-adapted, and
the embeddings would silently be the base model's. Here every adapter key is mapped
to today's module paths, every LoRA weight the config asks for must be present and
every key in the file must land on a module; otherwise :class:`ModelUnavailableError`.
Then the adapter is merged (``merge_and_unload``), so inference, saving and training
see a plain Qwen2-VL.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..errors import ModelUnavailableError

log = logging.getLogger(__name__)

_PREFIX = "base_model.model."
#: Module paths of transformers < 4.52 -> today's (the same rules as Qwen2-VL's checkpoint conversion).
LEGACY_PATHS: list[tuple[str, str]] = [
    (r"^visual\.", "model.visual."),
    (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
]
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a local peft adapter folder (adapter_config.json + weights)."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and any((p / f).is_file() for f in ADAPTER_FILES)


def map_legacy_key(key: str) -> str:
    """An adapter state-dict key with its module path moved to today's Qwen2-VL layout."""
    body = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
    for pattern, repl in LEGACY_PATHS:
        body, n = re.subn(pattern, repl, body)
        if n:
            break
    return _PREFIX + body if key.startswith(_PREFIX) else body


def read_adapter_weights(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's tensors (safetensors preferred, else a torch .bin), keys as saved."""
    st = adapter_dir / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return dict(load_file(str(st)))
    import torch

    return dict(torch.load(adapter_dir / "adapter_model.bin", map_location="cpu", weights_only=True))


def merge_adapter(model: Any, adapter: str, *, local_files_only: bool = False) -> Any:
    """Apply the LoRA adapter at ``adapter`` (folder or hub id) to ``model`` and merge it.

    Raises:
        ModelUnavailableError: the adapter cannot be read, or its keys do not match the model
            (a missing LoRA weight, or a weight for a module the model does not have).
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    adapter_dir = Path(adapter).expanduser()
    if not adapter_dir.is_dir():
        from huggingface_hub import snapshot_download

        try:
            adapter_dir = Path(snapshot_download(adapter, local_files_only=local_files_only,
                                                 allow_patterns=["adapter_config.json", "adapter_model.*"]))
        except Exception as e:  # noqa: BLE001 - hub errors come in many types
            raise ModelUnavailableError(f"cannot get LoRA adapter {adapter!r}: {str(e).splitlines()[0][:200]}",
                                        "download it, or pass a local adapter folder") from e
    if not is_adapter_dir(adapter_dir):
        raise ModelUnavailableError(f"{adapter_dir} is not a LoRA adapter folder (adapter_config.json and "
                                    "adapter_model.safetensors/.bin)", "pass the adapter's folder")
    try:
        config = LoraConfig.from_pretrained(str(adapter_dir))
        state = {map_legacy_key(k): v for k, v in read_adapter_weights(adapter_dir).items()}
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(f"cannot read LoRA adapter {adapter_dir}: {e}", "re-download the adapter") from e
    config.inference_mode = True
    peft_model = get_peft_model(model, config)
    expected = {_strip_adapter_name(n) for n, _ in peft_model.named_parameters() if ".lora_" in n}
    result = set_peft_model_state_dict(peft_model, state)
    unexpected = sorted(getattr(result, "unexpected_keys", []) or [])
    given = {k for k in state if ".lora_" in k}
    missing = sorted(expected - given)
    if unexpected or missing:
        what = (f"{len(missing)} LoRA weight(s) the adapter config asks for are missing from the file, e.g. "
                f"{missing[0]}" if missing else
                f"{len(unexpected)} adapter weight(s) match no module of the model, e.g. {unexpected[0]}")
        raise ModelUnavailableError(f"LoRA adapter {adapter} does not fit base model "
                                    f"{getattr(model.config, '_name_or_path', '?')}: {what}",
                                    "use the base model the adapter was trained on")
    log.info("merged LoRA adapter %s (%d weights, r=%s)", adapter, len(given), config.r)
    return peft_model.merge_and_unload()


def _strip_adapter_name(name: str) -> str:
    """``...q_proj.lora_A.default.weight`` -> ``...q_proj.lora_A.weight`` (the saved form)."""
    return re.sub(r"\.(lora_[A-Za-z_]+)\.[^.]+\.(weight|bias)$", r".\1.\2", name)
