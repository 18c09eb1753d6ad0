"""Run ``afinar serve`` as a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.wait import wait_for

API_KEY = "sk-e2e-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, catalog: Path | None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = dict(
            os.environ,
            AFINAR_HOST="127.0.0.1",
            AFINAR_PORT=str(self.port),
            AFINAR_DATA_DIR=str(data_dir),
            AFINAR_BOOTSTRAP_API_KEY=API_KEY,
            AFINAR_POLL_SECONDS="0.2",
            AFINAR_HEARTBEAT_SECONDS="0.5",
            AFINAR_WARM_MODELS="false",
            AFINAR_SAFETY_EVAL_MAX_NEW_TOKENS="8",
            # the tests' engine unless a test names another backend
            **{"AFINAR_INFERENCE_BACKEND": "builtin", **env},
        )
        if catalog is not None:
            self.env["AFINAR_CATALOG_FILE"] = str(catalog)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start ``afinar serve`` on an (empty or existing) data directory; do not wait for it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "afinar", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self.proc

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def exited(self) -> bool:
        """Whether the spawned process is gone (raises with its log's tail if so, for ``wait_for``)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{self.tail()}")
        return False

    def healthy(self) -> bool:
        self.exited()
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 60) -> Server:
        self.spawn()
        wait_for(self.healthy, timeout, 0.2, lambda: f"server did not start:\n{self.tail()}", RuntimeError)
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=API_KEY, max_retries=0, timeout=60)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def training_processes(job_id: str) -> list[int]:
    """PIDs of training children working on this job (their spec path names the job)."""
    out = subprocess.run(["pgrep", "-f", f"afinar.training .*{job_id}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.05)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_listening(server: Server, timeout: float = 120) -> Server:
    """Start ``afinar serve`` and return the moment its port accepts a connection (no health poll).

    For tests of what happens to the very first requests of a fresh process.
    """
    server.spawn()
    try:
        wait_for(
            lambda: not server.exited() and port_open(server.port),
            timeout,
            0.01,
            lambda: f"server did not start:\n{server.tail()}",
            RuntimeError,
        )
    except RuntimeError:
        server.stop()
        raise
    return server
