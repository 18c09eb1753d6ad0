"""Roles: an API node without a worker, and a worker without the API, as two real processes.

``AFINAR_EMBEDDED_WORKER=false afinar serve`` and ``afinar worker`` share one database and (for
now, with embedded storage) one data directory: a job created through the API node is trained by
the worker process, and the tuned model answers on the API node without a restart. ``afinar admin
workers`` lists the worker process and nothing else (the API node registers no worker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.data import chat_file
from tests.support.server import Server
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for


def test_api_node_and_separate_worker_process(tmp_path: Path, tiny_catalog: Path) -> None:
    data = tmp_path / "data"
    database = f"sqlite:///{data / 'shared.db'}"
    api = Server(data, tiny_catalog, AFINAR_EMBEDDED_WORKER="false", AFINAR_DATABASE_URL=database).start()
    worker_log = tmp_path / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        ready = f"http://127.0.0.1:{api.port}/ready"
        wait_for(lambda: httpx.get(ready, timeout=10).status_code == 200, 60)  # the ML stack imported
        client = api.client()
        fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model=TINY, training_file=fid, seed=3, hyperparameters={"n_epochs": 1, "batch_size": 2}
        )

        with worker_log.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "afinar", "worker"], env=api.env, stdout=log, stderr=subprocess.STDOUT
            )

        def finished() -> bool:
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{worker_log.read_text()[-3000:]}")
            return client.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed", "cancelled")

        wait_for(finished, 180, 0.3, lambda: worker_log.read_text()[-3000:], RuntimeError)
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", (done.error, worker_log.read_text()[-3000:])
        assert done.fine_tuned_model

        answer = client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2, seed=1
        )
        assert answer.model == done.fine_tuned_model and answer.choices[0].message.content is not None

        listed = subprocess.run(
            [sys.executable, "-m", "afinar", "admin", "workers", "--json"],
            env=api.env,
            capture_output=True,
            text=True,
            check=True,
        )
        workers = json.loads(listed.stdout)
        assert len(workers) == 1, workers  # the API node runs none
        assert f":{worker.pid}:" in workers[0]["name"] and workers[0]["live"]
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(15)
        api.stop()
