"""What a worker has (``Devices``) and what a job needs (``Requirement``): plain data, no torch.

``training/hardware.py`` probes a machine into a ``Devices``; a worker advertises it in the
``workers`` table (as ``to_json``) and claims only jobs whose base model's ``Requirement`` its
devices meet (docs/architecture.md, "Devices").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

GIB = 1024**3
NF4 = "nf4"  # jobs.quantization of a QLoRA job; NULL (or "none"): the base's own precision

DeviceKind = Literal["cpu", "cuda"]


def gib(n_bytes: int) -> str:
    """Bytes as GiB for people: ``"40 GiB"``, ``"0.5 GiB"``."""
    value = n_bytes / GIB
    return f"{value:.0f} GiB" if value >= 10 or value == int(value) else f"{value:.1f} GiB"


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int  # total memory of the device


@dataclass(frozen=True)
class Devices:
    """A worker's hardware as its jobs may use it: the CPU always; GPUs when ``kind`` is cuda."""

    kind: DeviceKind
    gpus: tuple[Gpu, ...] = ()
    cpu_cores: int = 1
    memory_bytes: int = 0  # RAM; 0 when unknown

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def largest_gpu_bytes(self) -> int:
        return max((g.memory_bytes for g in self.gpus), default=0)

    def summary(self) -> str:
        """One line for people: ``"cpu (16 cores, 125 GiB)"``, ``"2× NVIDIA H200 (139 GiB each)"``."""
        ram = f", {gib(self.memory_bytes)}" if self.memory_bytes else ""
        cpu = f"cpu ({self.cpu_cores} cores{ram})"
        if self.kind != "cuda" or not self.gpus:
            return cpu
        names = sorted({g.name for g in self.gpus})
        each = " each" if len(self.gpus) > 1 else ""
        return f"{len(self.gpus)}× {' + '.join(names)} ({gib(self.largest_gpu_bytes)}{each}); {cpu}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "gpus": [{"name": g.name, "memory_bytes": g.memory_bytes} for g in self.gpus],
            "cpu_cores": self.cpu_cores,
            "memory_bytes": self.memory_bytes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Devices:
        """The advertised form back; anything unreadable counts as a plain CPU worker."""
        data = data or {}
        gpus = tuple(
            Gpu(name=str(g.get("name", "")), memory_bytes=int(g.get("memory_bytes", 0)))
            for g in data.get("gpus") or []
            if isinstance(g, dict)
        )
        kind: DeviceKind = "cuda" if data.get("kind") == "cuda" and gpus else "cpu"
        return cls(
            kind=kind,
            gpus=gpus if kind == "cuda" else (),
            cpu_cores=int(data.get("cpu_cores") or 1),
            memory_bytes=int(data.get("memory_bytes") or 0),
        )


@dataclass(frozen=True)
class Requirement:
    """What a job needs of a worker, from its base model's catalogue entry. The default runs anywhere."""

    gpu: bool = False
    min_gpu_memory_bytes: int = 0

    @property
    def anywhere(self) -> bool:
        return not self.gpu and self.min_gpu_memory_bytes <= 0

    def met_by(self, devices: Devices) -> bool:
        if self.anywhere:
            return True
        return devices.kind == "cuda" and devices.largest_gpu_bytes >= self.min_gpu_memory_bytes

    def describe(self) -> str:
        """``"a GPU with at least 40 GiB"``, ``"a GPU"``, or ``"any device"``."""
        if self.anywhere:
            return "any device"
        if self.min_gpu_memory_bytes > 0:
            return f"a GPU with at least {gib(self.min_gpu_memory_bytes)}"
        return "a GPU"


@dataclass(frozen=True)
class WorkerState:
    """One row of the ``workers`` table as operators see it (``afinar admin workers``)."""

    name: str
    host: str
    lanes: dict[str, int]  # threads per lane: {"training": 1, "short": 2}
    devices: Devices
    started_at: int
    heartbeat_at: float
    live: bool  # heartbeat within a few lease periods; a stale row blocks nothing
    jobs_held: int  # jobs it holds a live lease on (validating or training)

    @property
    def trains(self) -> bool:
        return self.lanes.get("training", 0) > 0


def describe_workers(workers: Iterable[WorkerState]) -> str:
    """``"1 cpu"``, ``"2 cpu, 1 with 1× NVIDIA H200 (139 GiB)"``, ``"none"``: the training workers."""
    cpu = 0
    gpu: dict[str, int] = {}
    for w in workers:
        if w.devices.kind == "cuda" and w.devices.gpus:
            key = w.devices.summary().split(";", 1)[0]
            gpu[key] = gpu.get(key, 0) + 1
        else:
            cpu += 1
    parts = [f"{cpu} cpu"] if cpu else []
    parts += [f"{n} with {key}" for key, n in sorted(gpu.items())]
    return ", ".join(parts) or "none"
