"""The training child process: spawn ``python -m afinar.training``, read its JSON lines, signal it.

With ``processes`` > 1 the child is the data-parallel launcher, ``python -m
afinar.training.distributed`` (``accelerate launch``, one rank per process; rank 0 speaks the same
protocol). Signals and kills go to the launcher: it turns SIGUSR1 into a pause of every rank, and
its ranks die with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from afinar.inference.openmp import training_env

_EOF = object()
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the worker dies, so no orphan keeps training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def child_command(spec_path: Path, processes: int = 1, launcher_args: Sequence[str] = ()) -> list[str]:
    """The command line of a training child: one process, or the launcher of ``processes`` ranks
    (``launcher_args`` go to ``accelerate launch``)."""
    if processes <= 1:
        return [sys.executable, "-m", "afinar.training", str(spec_path)]
    extra = ["--", *launcher_args] if launcher_args else []
    return [
        sys.executable,
        "-m",
        "afinar.training.distributed",
        "--processes",
        str(processes),
        str(spec_path),
        *extra,
    ]


class TrainingChild:
    def __init__(
        self,
        spec_path: Path,
        log_path: Path,
        secret: bytes | None = None,
        *,
        processes: int = 1,
        launcher_args: Sequence[str] = (),
    ) -> None:
        """``secret`` (one line, e.g. the base64 data key) is written to the child's stdin, never to disk.
        ``processes`` > 1 trains data-parallel (``AFINAR_TRAIN_PROCESSES``)."""
        self._log = log_path.open("ab")
        env = training_env(os.environ) | {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(
            child_command(spec_path, processes, launcher_args),
            stdin=subprocess.PIPE if secret is not None else None,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if secret is not None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(secret + b"\n")
                self.proc.stdin.flush()
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self._lines: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pause_sent = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                continue  # not protocol: ignore
        self._lines.put(_EOF)

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, ``None`` on timeout; raises EOFError once the child closed stdout."""
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _EOF:
            raise EOFError
        return item

    def pause(self) -> None:
        if not self.pause_sent and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            self.pause_sent = True

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def wait(self) -> int:
        code = self.proc.wait()
        self._log.close()
        return code

    def stderr_tail(self, path: Path, n: int = 800) -> str:
        try:
            return path.read_text(errors="replace")[-n:]
        except OSError:
            return ""
