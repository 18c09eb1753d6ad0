"""``afinar jobs follow``: poll a job and its events until it ends, with a live progress bar.

The bar shows the step out of the total, the latest training loss and the time left (from the
job's ``estimated_finish``); other events (validated, started, checkpoint, ...) print as lines
above it. Polling the job first and its events second means the events of a job seen as ended
are all there when the loop stops.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from afinar.cli.output import err, eta, when

if TYPE_CHECKING:
    import openai
    from openai.types.fine_tuning import FineTuningJob

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_EVENT_PAGE = 100


def follow(
    client: openai.OpenAI, job_id: str, *, interval: float = 1.0, quiet: bool = False
) -> FineTuningJob:
    """Poll until the job is succeeded, failed or cancelled; return it as last seen."""
    seen: set[str] = set()
    step, total, loss = 0, None, "-"
    console = err()  # stdout stays clean for --json
    progress = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  loss {task.fields[loss]}  ETA {task.fields[eta]}"),
        console=console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("validating_files", total=None, loss=loss, eta="-")
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = client.fine_tuning.jobs.list_events(job_id, limit=_EVENT_PAGE).data
            for ev in reversed(events):  # the API lists newest first
                if ev.id in seen:
                    continue
                seen.add(ev.id)
                data: dict[str, Any] = dict(getattr(ev, "data", None) or {})
                if ev.type == "metrics" and "step" in data:
                    if int(data["step"]) >= step:
                        step = int(data["step"])
                        total = int(data.get("total_steps") or 0) or total
                        if data.get("train_loss") is not None:
                            loss = f"{float(data['train_loss']):.4f}"
                elif not quiet:
                    progress.console.print(
                        f"[dim]{when(ev.created_at)}[/] {escape(ev.message)}", soft_wrap=True
                    )
            if job.status == "succeeded" and total:
                step = total
            progress.update(
                task,
                description=job.status,
                completed=step,
                total=total,
                loss=loss,
                eta=eta(job.estimated_finish) if job.status == "running" else "-",
            )
            if job.status in TERMINAL:
                return job
            time.sleep(interval)
