"""Names of the machine a figure was measured on, for benchmark and results documents."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """``CPU model (N cores), GPU names`` or ``..., no GPU``."""
    text = f"{cpu_model()} ({os.cpu_count()} cores)"
    import torch  # late: keeps this module importable by scripts that only format documents

    if torch.cuda.is_available():
        return text + ", " + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return text + ", no GPU"
