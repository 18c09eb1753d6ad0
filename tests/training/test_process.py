"""`python -m afinar.training SPEC.json` as the worker runs it: protocol on stdout, signals, errors."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from afinar.training.spec import TrainSpec
from tests.training.conftest import SpecFactory

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT = 60.0


class Child:
    """The training child with its stdout read line by line on a thread (so reads can time out)."""

    def __init__(self, spec: TrainSpec, tmp: Path) -> None:
        spec_path = tmp / f"spec-{os.getpid()}-{id(self)}.json"
        spec_path.write_text(spec.model_dump_json())
        self.stderr_path = tmp / f"stderr-{id(self)}.txt"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "afinar.training", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_event(self) -> dict[str, Any] | None:
        line = self.lines.get(timeout=TIMEOUT)
        if line is None:
            return None
        event: dict[str, Any] = json.loads(line)  # every stdout line must be one JSON object
        self.events.append(event)
        return event

    def until(self, kind: str) -> dict[str, Any]:
        while (event := self.next_event()) is not None:
            if event["event"] == kind:
                return event
        raise AssertionError(f"no {kind!r} event; got {self.events}; stderr: {self.stderr()}")

    def finish(self) -> int:
        while self.next_event() is not None:
            pass
        return self.proc.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        return self.stderr_path.read_text()[-3000:]


def test_pause_with_sigusr1_then_resume(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(n_epochs=2, step_delay_seconds=1.0)
    child = Child(spec, tmp_path)
    started = child.until("started")
    assert started["start_step"] == 0 and started["total_steps"] == 6
    first = child.until("step")
    child.proc.send_signal(signal.SIGUSR1)
    assert child.finish() == 0, child.stderr()
    paused = child.events[-1]
    assert paused["event"] == "paused", child.events
    assert first["step"] <= paused["step"] < 6
    steps = [e for e in child.events if e["event"] == "step"]
    assert steps[-1]["step"] == paused["step"]
    assert paused["trained_tokens"] == steps[-1]["trained_tokens"]
    ckpt = Path(paused["path"])
    assert ckpt == Path(spec.output_dir) / "checkpoints" / f"step-{paused['step']}"
    assert json.loads((ckpt / "state.json").read_text())["step"] == paused["step"]
    assert not list(ckpt.parent.glob(".*"))  # no temporary directories left behind

    resumed = Child(spec.model_copy(update={"resume_from": str(ckpt), "step_delay_seconds": 0.0}), tmp_path)
    assert resumed.finish() == 0, resumed.stderr()
    kinds = [e["event"] for e in resumed.events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert resumed.events[0]["start_step"] == paused["step"]
    done = resumed.events[-1]
    assert done["step"] == 6
    assert done["trained_tokens"] == 2 * started["tokens_per_epoch"]
    assert (Path(done["adapter_path"]) / "adapter_model.safetensors").is_file()


def test_sigterm_stops_promptly(make_spec: SpecFactory, tmp_path: Path) -> None:
    child = Child(make_spec(n_epochs=50, step_delay_seconds=0.5), tmp_path)
    child.until("step")
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(timeout=10) != 0
    child.finish()
    assert all(e["event"] in {"started", "step", "checkpoint"} for e in child.events)


def test_errors_are_reported_as_events(make_spec: SpecFactory, tmp_path: Path) -> None:
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    child = Child(make_spec(train_file=str(bad_data)), tmp_path)
    assert child.finish() == 1
    assert [e["event"] for e in child.events] == ["error"]
    assert "train_file line 2" in child.events[0]["message"]

    spec_path = tmp_path / "broken-spec.json"
    spec_path.write_text(json.dumps({"train_file": "x.jsonl", "n_epochs": 0}))
    proc = subprocess.run(
        [sys.executable, "-m", "afinar.training", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    error = json.loads(lines[0])
    assert error["event"] == "error" and "invalid training spec" in error["message"]
