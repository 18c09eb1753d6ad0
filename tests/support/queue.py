"""A fine-tuning job row written straight into the store, for the queue and limit tests."""

from __future__ import annotations

import time

from afinar.domain.jobs import JobStatus
from afinar.store.tables import Job


def add_job(db, org_id: str, status: str = JobStatus.VALIDATING_FILES) -> str:  # type: ignore[no-untyped-def]
    with db.session() as s:
        job = Job(
            id=f"ftjob-{time.time_ns()}",
            org_id=org_id,
            model="m",
            training_file="file-x",
            status=status,
            created_at=int(time.time()),
            seed=1,
            method={"type": "supervised"},
            requested_hyperparameters={},
            model_name="ft:m:o::abcdefgh",
            result_files=[],
        )
        s.add(job)
        s.flush()
        return job.id
