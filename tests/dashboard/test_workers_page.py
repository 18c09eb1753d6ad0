"""The dashboard's workers page (admins): each worker's devices, lanes, jobs held, last heartbeat and
state, from the same ``workers`` rows ``afinar admin workers`` reads; other keys neither see the
link nor the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from afinar.dashboard.templating import when
from afinar.domain.hardware import GIB, Devices, Gpu
from afinar.queue.leases import claim
from tests.support.clock import T0
from tests.support.dashboard import sign_in
from tests.support.data import chat_file
from tests.support.tiny_model import TINY

H200 = Devices(kind="cuda", gpus=(Gpu("NVIDIA H200", 139 * GIB),) * 2, cpu_cores=16, memory_bytes=128 * GIB)


def _row(html: str, name: str) -> str:
    start = html.index(f'<code class="wrap">{name}</code>')
    return html[start : html.index("</tr>", start)]


def test_workers_page_shows_devices_jobs_and_heartbeats(
    http: Any, client: openai.OpenAI, container: Any, clock: Any, tmp_path: Path
) -> None:
    workers = container.workers
    workers.register(
        "old-cpu", host="cpu-box", lanes={"training": 1}, devices=Devices(kind="cpu", cpu_cores=4)
    )
    clock.advance(3600)  # old-cpu never beats again: stale
    workers.register("gpu-1", host="gpu-box", lanes={"training": 1, "short": 2}, devices=H200)
    clock.advance(30)
    workers.heartbeat("gpu-1")
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune").id
    client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    assert claim(container.db, "gpu-1/short-0", container.settings.lease_seconds, lane="validate") is not None
    clock.advance(2)

    assert sign_in(http).status_code == 303
    home = http.get("/").text
    assert 'href="/workers"' in home
    html = http.get("/workers").text
    gpu, cpu = _row(html, "gpu-1"), _row(html, "old-cpu")
    assert html.index("gpu-1") < html.index("old-cpu")  # live workers first
    assert "busy" in gpu and "2 GPUs, 139 GiB each" in gpu and "1 of 3" in gpu and "gpu-box" in gpu
    assert when(T0 + 3630) in gpu and "2 s ago" in gpu
    assert "stale" in cpu and "CPU only" in cpu and "0 of 1" in cpu and when(T0) in cpu
    assert "ftjob-" not in html  # counts only: the jobs are other organisations' too


def test_workers_page_is_for_admins_only(http: Any, bot: openai.OpenAI, container: Any) -> None:
    container.workers.register("w", host="h", lanes={"training": 1}, devices=Devices(kind="cpu"))
    assert sign_in(http, bot.api_key).status_code == 303
    assert 'href="/workers"' not in http.get("/").text
    denied = http.get("/workers")
    assert (
        denied.status_code == 403
        and "admin" in denied.text
        and '<code class="wrap">w</code>' not in denied.text
    )


def test_no_workers_says_how_to_start_one(http: Any) -> None:
    assert sign_in(http).status_code == 303
    assert "No worker has registered" in http.get("/workers").text
