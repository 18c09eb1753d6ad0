"""``python -m afinar.training SPEC.json``: one training run as a child process.

Stdout carries only the JSON-lines protocol (see ``protocol.py``); everything else, including
anything a library prints, goes to stderr. SIGUSR1 pauses (finish the step, checkpoint, emit
``paused``, exit 0); SIGTERM stops at once with the default action.

Started by ``accelerate launch`` (``distributed.py``), this is one rank of a data-parallel job:
only rank 0 writes the protocol; the others train silently.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType

from afinar.catalog.ml_stack import quiet_optional_kernels
from afinar.training.distributed import launched
from afinar.training.protocol import Event, JsonLinesEmitter


def _protocol_stream() -> JsonLinesEmitter:
    """Keep a private handle on the real stdout, then point fd 1 (and sys.stdout) at stderr."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return JsonLinesEmitter(proto)


def _quiet_libraries() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a hard dependency of training
        pass


def _silent(event: Event) -> None:
    """The protocol of a rank other than 0: nothing (errors go to stderr as tracebacks)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quiet_optional_kernels()
    if launched():
        from afinar.training.distributed import die_with_launcher

        die_with_launcher()
    emit: Callable[[Event], None] = _protocol_stream()
    group = None
    pause = threading.Event()

    def on_pause(signum: int, frame: FrameType | None) -> None:
        pause.set()

    signal.signal(signal.SIGUSR1, on_pause)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if len(args) != 1:
        emit({"event": "error", "message": "usage: python -m afinar.training SPEC.json"})
        return 1
    try:
        from pydantic import ValidationError

        from afinar.training.spec import TrainSpec

        try:
            spec = TrainSpec.from_file(args[0])
        except ValidationError as exc:
            raise ValueError(f"invalid training spec: {exc}") from exc
        if launched():
            from afinar.training.distributed import join

            group = join()
            if not group.is_main:
                emit = _silent
        data_key = None
        if spec.train_blob_key or spec.valid_blob_key:  # encrypted inputs: the key arrives on stdin
            import base64

            if group is None or group.is_main:  # the ranks share the launcher's stdin: rank 0 reads
                data_key = base64.b64decode(sys.stdin.readline().strip())
                sys.stdin.close()
            if group is not None:
                data_key = group.share(data_key)
        _quiet_libraries()
        from afinar.training.loop import run_training

        if group is None:
            run_training(spec, emit, should_pause=pause.is_set, data_key=data_key)
        else:
            run_training(spec, emit, should_pause=pause.is_set, data_key=data_key, group=group)
            group.close()  # after an error the launcher stops the other ranks instead
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "message": str(exc) or type(exc).__name__})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
