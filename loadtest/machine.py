"""A one-line description of the machine, printed next to every latency figure.

Latency and throughput numbers mean little without the hardware, and on this
project's 2-core machine the load generator and the server compete for the
same cores; every report says so instead of leaving readers to guess.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    ram_gib: float
    python: str
    gpus: tuple[str, ...] = field(default=())  # NVIDIA GPUs the machine has (driver or nvidia-smi), by model

    def describe(self) -> str:
        return f"{self.cores} cores ({self.cpu_model}), {self.ram_gib:.0f} GiB RAM, {self.gpu_text()}"

    def gpu_text(self) -> str:
        if not self.gpus:
            return "no GPU"
        names = sorted(set(self.gpus))
        return f"{len(self.gpus)} GPU{'s' if len(self.gpus) > 1 else ''} ({', '.join(names)})"

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_model() -> str:
    # psutil does not name the CPU; the kernel does.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    return psutil.virtual_memory().total / 1024**3


def _gpus() -> tuple[str, ...]:
    """NVIDIA GPUs as the kernel driver lists them, else as nvidia-smi does; () when neither knows one (psutil knows none)."""
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    models.append(line.split(":", 1)[1].strip())
        except OSError:
            pass
    if models:
        return tuple(models)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            return tuple(line.strip() for line in out.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return ()


def this_machine() -> Machine:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cores=cores, cpu_model=_cpu_model(), ram_gib=_ram_gib(), python=platform.python_version(),
                   gpus=_gpus())


SHARED_CORES_NOTE = "the load generator and the server run on the same machine and share these cores"
