"""Machine description printed by every benchmark (platform, CPU, cores, torch, device)."""

from __future__ import annotations

import os
import platform


def machine(device: str = "cpu") -> str:
    """One line describing where the figures come from."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"machine: {platform.platform()}; CPU {cpu}; {os.cpu_count()} logical cores "
            f"(torch threads {torch.get_num_threads()}); python {platform.python_version()}; "
            f"torch {torch.__version__}; device {device}{gpu}")
