"""Data-parallel training through ``accelerate launch`` on this CPU (gloo), as the worker starts it.

One process trains in this test's process; the 2-process job runs as ``worker/child.py`` starts it
(``AFINAR_TRAIN_PROCESSES=2``): the launcher, two ranks, the protocol from rank 0 only, the data key
on stdin (the training file is an encrypted blob). Tolerance: per-step train and validation losses
within 1e-4 relative of the one-process run (the ranks add the same terms in another order);
``trained_tokens`` exactly equal.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from afinar.crypto.stream import encrypt_chunks
from afinar.training.loop import run_training
from afinar.training.spec import TrainSpec
from afinar.worker.child import TrainingChild, child_command
from tests.training.conftest import Recorder, SpecFactory

REL_TOL = 1e-4
TIMEOUT = 120.0
KEY = bytes(range(32))
BLOB = "org-test/files/file-train"


def encrypted_copy(plain: Path, target: Path) -> Path:
    target.write_bytes(b"".join(encrypt_chunks(KEY, BLOB, [plain.read_bytes()])))
    return target


class Launched:
    """A 2-process job started as the worker starts it, its events read until the launcher closes stdout."""

    def __init__(self, spec: TrainSpec, tmp: Path, name: str) -> None:
        spec_path = tmp / f"{name}.json"
        spec_path.write_text(spec.model_dump_json())
        self.log = tmp / f"{name}.log"
        self.child = TrainingChild(spec_path, self.log, secret=base64.b64encode(KEY), processes=2)
        self.events: list[dict[str, Any]] = []

    def until(self, kind: str | None) -> dict[str, Any] | None:
        """Events up to the first of ``kind`` (None: until the end of the output)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                event = self.child.next_event(timeout=1.0)
            except EOFError:
                assert kind is None, f"no {kind!r} event; got {self.events}; log: {self.tail()}"
                return None
            if event is None:
                continue
            self.events.append(event)
            if event["event"] == kind:
                return event
        raise AssertionError(f"timed out; events {self.events}; log: {self.tail()}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def ranks(self) -> list[psutil.Process]:
        return psutil.Process(self.child.proc.pid).children()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= REL_TOL * abs(b)


def test_the_worker_starts_one_process_as_before_and_the_launcher_for_more(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    assert child_command(spec)[1:] == ["-m", "afinar.training", str(spec)]
    launcher = child_command(spec, 4, ["--num_machines", "2"])
    assert launcher[1:] == [
        "-m",
        "afinar.training.distributed",
        "--processes",
        "4",
        str(spec),
        "--",
        "--num_machines",
        "2",
    ]


def test_two_processes_match_one_checkpoint_and_resume_after_a_rank_is_killed(
    make_spec: SpecFactory, train_file: Path, valid_file: Path, tmp_path: Path
) -> None:
    # batch_size 3 over 6 examples: each global batch splits 2 + 1 between the ranks.
    common: dict[str, Any] = {"batch_size": 3, "n_epochs": 2, "valid_file": str(valid_file)}
    one = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "one"), **common), one)

    blob = encrypted_copy(train_file, tmp_path / "train.blob")
    two_spec = make_spec(
        output_dir=str(tmp_path / "two"), train_file=str(blob), train_blob_key=BLOB, **common
    )
    two = Launched(two_spec, tmp_path, "two")
    two.until(None)
    assert two.child.wait() == 0, two.tail()
    assert two.of("started")[0]["processes"] == 2
    steps_one, steps_two = one.of("step"), two.of("step")
    assert [e["step"] for e in steps_two] == [e["step"] for e in steps_one] == [1, 2, 3, 4]
    assert [e["trained_tokens"] for e in steps_two] == [e["trained_tokens"] for e in steps_one]
    for a, b in zip(steps_two, steps_one, strict=True):
        assert close(a["train_loss"], b["train_loss"]), (a, b)
        assert close(a["train_accuracy"], b["train_accuracy"]), (a, b)
        assert (a["valid_loss"] is None) == (b["valid_loss"] is None)
        assert a["valid_loss"] is None or close(a["valid_loss"], b["valid_loss"]), (a, b)
    assert steps_one[0]["train_loss"] != steps_one[-1]["train_loss"]  # it learned: the curve is no line
    assert [e["step"] for e in two.of("checkpoint")] == [2, 4]  # rank 0 alone writes and reports them
    assert (tmp_path / "two" / "checkpoints" / "step-2" / "state.json").is_file()
    done = two.of("done")
    assert len(done) == 1 and done[0]["trained_tokens"] == one.of("done")[0]["trained_tokens"]
    assert (tmp_path / "two" / "final" / "adapter_model.safetensors").is_file()

    # One rank SIGKILLed after the first checkpoint: the whole job ends, no rank is left behind.
    slow = make_spec(
        output_dir=str(tmp_path / "killed"),
        train_file=str(blob),
        train_blob_key=BLOB,
        step_delay_seconds=1.0,
        **common,
    )
    killed = Launched(slow, tmp_path, "killed")
    checkpoint = killed.until("checkpoint")
    assert checkpoint is not None and checkpoint["step"] == 2
    ranks = killed.ranks()
    assert len(ranks) == 2
    victim = next(p for p in ranks if p.environ().get("RANK") == "1")
    os.kill(victim.pid, signal.SIGKILL)
    killed.until(None)
    assert killed.child.wait() != 0
    assert not killed.of("done")
    _gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive

    # Resumed from that checkpoint, it ends with the one-process run's trained_tokens.
    resumed = Launched(
        make_spec(
            output_dir=str(tmp_path / "killed"),
            train_file=str(blob),
            train_blob_key=BLOB,
            resume_from=checkpoint["path"],
            **common,
        ),
        tmp_path,
        "resumed",
    )
    resumed.until(None)
    assert resumed.child.wait() == 0, resumed.tail()
    assert resumed.of("started")[0]["start_step"] == 2
    assert [e["step"] for e in resumed.of("step")] == [3, 4]
    for a, b in zip(resumed.of("step"), steps_one[2:], strict=True):
        assert a["trained_tokens"] == b["trained_tokens"] and close(a["train_loss"], b["train_loss"])
    assert resumed.of("done")[0]["trained_tokens"] == one.of("done")[0]["trained_tokens"]


def paused_after_first_step(spec: TrainSpec, tmp_path: Path) -> dict[str, Any]:
    """Launch ``spec`` on 2 ranks, pause it once a step is done; its ``paused`` event."""
    job = Launched(spec, tmp_path, "pause")
    assert job.until("step") is not None
    job.child.pause()
    job.until(None)
    assert job.child.wait() == 0, job.tail()
    paused = job.events[-1]
    assert paused["event"] == "paused" and paused["step"] < 6, job.events
    return paused


def test_pause_stops_every_rank_after_the_same_step(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(output_dir=str(tmp_path / "p"), step_delay_seconds=1.0)
    paused = paused_after_first_step(spec, tmp_path)
    assert Path(paused["path"], "state.json").is_file()
