"""The device probe: what this machine offers a training child (docs/architecture.md, "Devices").

``probe()`` returns plain data (``afinar.domain.hardware.Devices``): the CPU's cores and RAM always,
and each visible CUDA device's name and total memory (``CUDA_VISIBLE_DEVICES`` applies). It never
allocates on a GPU. ``mode`` is the operator's ``AFINAR_WORKER_DEVICES``: ``auto`` advertises what
is found, ``cpu`` hides the GPUs (the worker claims only jobs that run anywhere), ``cuda`` demands
one (no visible GPU is an error, not a silent CPU worker).
"""

from __future__ import annotations

import os

from afinar.domain.hardware import Devices, Gpu

MODES = ("auto", "cpu", "cuda")


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), else every core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ram_bytes() -> int:
    """Physical memory in bytes; 0 when the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 0


def cuda_gpus() -> tuple[Gpu, ...]:
    """The visible CUDA devices (name, total memory); none without torch's CUDA build or a driver."""
    import torch

    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(Gpu(name=str(props.name), memory_bytes=int(props.total_memory)))
    return tuple(out)


def probe(mode: str = "auto") -> Devices:
    """This machine's devices as a worker advertises them; ``mode`` as ``AFINAR_WORKER_DEVICES``."""
    if mode not in MODES:
        raise ValueError(f"AFINAR_WORKER_DEVICES must be one of {', '.join(MODES)}, not {mode!r}")
    gpus = () if mode == "cpu" else cuda_gpus()
    if mode == "cuda" and not gpus:
        raise RuntimeError("AFINAR_WORKER_DEVICES=cuda, but no CUDA device is visible to this worker")
    return Devices(kind="cuda" if gpus else "cpu", gpus=gpus, cpu_cores=cpu_cores(), memory_bytes=ram_bytes())


if __name__ == "__main__":  # python -m afinar.training.hardware: what a worker here would advertise
    import json
    import sys

    devices = probe(sys.argv[1] if len(sys.argv) > 1 else "auto")
    print(json.dumps({**devices.to_json(), "summary": devices.summary()}))
