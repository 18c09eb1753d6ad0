"""``afinar admin workers``: every registered worker with its lanes, devices, heartbeat and jobs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from afinar.clock import FixedClock, system_clock
from afinar.domain.hardware import GIB, Devices, Gpu
from afinar.domain.jobs import JobStatus
from afinar.queue.leases import claim
from afinar.services.orgs import create_org
from tests.support.cli import admin, embedded_env
from tests.support.queue import add_job


def test_admin_workers_lists_live_and_stale_workers(tmp_path: Path, tiny_catalog: Path) -> None:
    from afinar.config import Settings
    from afinar.services.container import Container
    from afinar.worker.loop import Worker

    env = embedded_env(tmp_path / "data", tiny_catalog)
    run = partial(admin, env, "workers")

    c = Container(Settings(data_dir=tmp_path / "data", catalog_file=tiny_catalog, worker_devices="cpu"))
    try:
        c.migrate()
        assert "no workers registered" in run()
        org = create_org(c.db, "acme")[0].id
        add_job(c.db, org, JobStatus.QUEUED)
        Worker(c, name="cpu-box").register()  # a real worker here: its probed CPU
        assert claim(c.db, "cpu-box/train-0", 600, lane="train") is not None
        h200 = Devices(kind="cuda", gpus=(Gpu("NVIDIA H200", 141 * GIB),) * 2, cpu_cores=32)
        c.clock = FixedClock(system_clock() - 3600)  # a worker silent for an hour
        c.workers.register("gpu-box", host="gpu1", lanes={"training": 2, "short": 0}, devices=h200)
    finally:
        c.close()

    text = run()
    lines = {line.split()[1]: line for line in text.splitlines() if "-box" in line}
    assert set(lines) == {"cpu-box", "gpu-box"}
    assert "training 1, short 2" in lines["cpu-box"] and "cpu (" in lines["cpu-box"]
    assert "(stale)" not in lines["cpu-box"] and lines["cpu-box"].rstrip(" │").endswith("1")
    assert "2× NVIDIA H200 (141 GiB each)" in lines["gpu-box"] and "(stale)" in lines["gpu-box"]

    listed = {w["name"]: w for w in json.loads(run("--json"))}
    assert listed["cpu-box"]["live"] is True and listed["cpu-box"]["jobs_held"] == 1
    assert listed["cpu-box"]["devices"]["kind"] == "cpu"
    gpu = listed["gpu-box"]
    assert (gpu["live"], gpu["jobs_held"], gpu["lanes"]) == (False, 0, {"training": 2, "short": 0})
    assert gpu["devices"]["gpus"] == [{"name": "NVIDIA H200", "memory_bytes": 141 * GIB}] * 2
