"""Data-parallel training over several processes, started by ``accelerate launch``.

The launcher: ``python -m afinar.training.distributed --processes N SPEC.json [-- ACCELERATE ARGS]``
is what the worker starts when ``AFINAR_TRAIN_PROCESSES`` > 1. It runs accelerate's launcher in
its own process (torch elastic: one rank per process, started as ``python -m afinar.training
SPEC.json``), on the GPUs (NCCL) or, when the job trains on the CPU, with gloo. The ranks inherit
its stdout, and only rank 0 writes the JSON-lines protocol to it.

- **Dying together.** Each rank asks the kernel for SIGKILL when the launcher dies
  (``PR_SET_PDEATHSIG``), as the launcher does when the worker dies: killing the launcher's
  process group (cancel) or the worker (SIGKILL) takes every rank with it. When one rank dies,
  torch elastic stops the others and the launcher exits with status 1.
- **Pausing.** SIGUSR1 to the launcher writes ``pause.request`` in the job's output directory;
  rank 0 reads it after each step and broadcasts its decision, so every rank stops after the same
  step. The launcher removes a stale request when it starts.
- **The data key** arrives on the launcher's stdin, which the ranks inherit: rank 0 reads it and
  broadcasts it to the others.

In a rank (``Group``): each global batch of ``batch_size`` examples (the same batches, in the same
order, as one process trains) is split across the ranks; the loss is the global mean over every
label token, from an all-reduce of (loss sum, correct, label count), and each rank back-propagates
its loss sum over the global label count, so the gradients summed by one all-reduce are exactly
the one-process gradients, up to the order of floating-point additions. The label-only loss calls
the backbone and the head directly rather than the model's ``forward``, so the gradient all-reduce
is done here (bucketed, as DDP's reducer does) instead of by a ``DistributedDataParallel`` wrapper.
A full fine-tune is sharded instead (FSDP, ``sharding.py``): there the gradients are reduce-scattered
by FSDP and ``sum_grads`` is not used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LAUNCHER_ENV = "AFINAR_LAUNCHER_PID"  # set by the launcher: its ranks train data-parallel
CPU_ENV = "ACCELERATE_USE_CPU"  # set by the launcher when the job trains on the CPU
PAUSE_FILE = "pause.request"
BUCKET_ELEMENTS = 25_000_000  # gradient elements per all-reduce (DDP's default bucket is 25 MB)
PR_SET_PDEATHSIG = 1


def launched() -> bool:
    """True in a rank started by this module's launcher."""
    return LAUNCHER_ENV in os.environ


def die_with_launcher() -> None:
    """In a rank: SIGKILL when the launcher dies; exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # pragma: no cover - not Linux
        return
    if str(os.getppid()) != os.environ.get(LAUNCHER_ENV):
        os._exit(1)  # the launcher died before the request took effect


@dataclass
class Group:
    """This process's place among the job's ranks; ``world == 1`` is a plain single process."""

    world: int = 1
    rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of ``items`` (every world-th, from its rank)."""
        return list(items[self.rank :: self.world])

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sums over every rank (float64)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace every gradient by its sum over the ranks (a missing one counts as zeros)."""
        import torch
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        buckets: list[list[torch.Tensor]] = [[]]
        size = 0
        for p in params:
            if buckets[-1] and size + p.numel() > BUCKET_ELEMENTS:
                buckets.append([])
                size = 0
            assert p.grad is not None
            buckets[-1].append(p.grad)
            size += p.numel()
        for grads in buckets:
            if not grads:
                continue
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_params(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Rank 0's values everywhere (the ranks build the same seeded model; this makes it certain)."""
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def decide(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag``, on every rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def share(self, value: bytes | None) -> bytes | None:
        """Rank 0's ``value`` (e.g. the data key), on every rank."""
        import torch.distributed as dist

        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        result: bytes | None = box[0]
        return result

    def close(self) -> None:
        """Leave the group once every rank is done (rank 0 last writes the final adapter): a rank
        that tore its connections down while another still used them could abort."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


SINGLE = Group()


def join() -> Group:
    """Join the job's process group, from the environment ``accelerate launch`` set (gloo on the
    CPU, NCCL on GPUs; each rank on the GPU of its local rank)."""
    from accelerate import PartialState

    state = PartialState(cpu=os.environ.get(CPU_ENV, "").lower() in ("1", "true", "yes"))
    if int(state.num_processes) != int(os.environ.get("WORLD_SIZE", "1")):
        raise RuntimeError(f"joined {state.num_processes} of {os.environ.get('WORLD_SIZE')} processes")
    world = int(state.num_processes)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Group(world=world, rank=int(state.process_index), local_world=local)


def pause_requested(output_dir: str | Path) -> bool:
    return (Path(output_dir) / PAUSE_FILE).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def launcher_args(processes: int, spec_path: str, extra: Sequence[str]) -> list[str]:
    """``accelerate launch`` arguments for ``processes`` ranks of ``python -m afinar.training``.
    ``extra`` (``AFINAR_TRAIN_LAUNCHER_ARGS``) comes last, so it overrides the defaults
    (``--num_machines``, ``--main_process_port``, ...)."""
    return [
        "--multi_gpu",  # torch elastic, one process per rank; the ranks pick gloo on the CPU
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # the child chooses its own precision (placement.py)
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        *extra,
        "--module",
        "afinar.training",
        spec_path,
    ]


def launch(argv: Sequence[str] | None = None) -> int:
    """The launcher's main: start the ranks with accelerate, forward pause requests, exit when they do."""
    parser = argparse.ArgumentParser(prog="python -m afinar.training.distributed")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("spec")
    parser.add_argument("accelerate_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    extra = [a for a in args.accelerate_args if a != "--"] if args.accelerate_args else []
    sys.stdout = sys.stderr  # fd 1 stays the protocol pipe the ranks inherit; our prints go to stderr

    from afinar.training.spec import TrainSpec

    spec = TrainSpec.from_file(args.spec)
    request = Path(spec.output_dir) / PAUSE_FILE
    request.parent.mkdir(parents=True, exist_ok=True)
    request.unlink(missing_ok=True)

    def on_pause(signum: int, frame: FrameType | None) -> None:
        request.touch()

    signal.signal(signal.SIGUSR1, on_pause)
    import torch

    cpu = spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    if cpu:
        os.environ[CPU_ENV] = "true"  # the ranks join with gloo
    from accelerate.commands.launch import launch_command, launch_command_parser

    parsed = launch_command_parser().parse_args(launcher_args(args.processes, args.spec, extra))
    try:
        launch_command(parsed)
    except Exception as exc:  # a rank failed (torch elastic's ChildFailedError) or could not start
        print(f"afinar launcher: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(OSError):
            request.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(launch())
