"""A one-line description of the machine, printed next to every latency figure.

Latency and throughput numbers mean little without the hardware, and on this
project's 2-core machine the load generator and the server compete for the
same cores; every report says so instead of leaving readers to guess.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    ram_gib: float
    python: str

    def describe(self) -> str:
        return f"{self.cores} cores ({self.cpu_model}), {self.ram_gib:.0f} GiB RAM"

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def this_machine() -> Machine:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cores=cores, cpu_model=_cpu_model(), ram_gib=_ram_gib(), python=platform.python_version())


SHARED_CORES_NOTE = "the load generator and the server run on the same machine and share these cores"
