"""``afinar jobs``: create, list, show, cancel, pause, resume and follow fine-tuning jobs; results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from afinar.cli.client import make_client
from afinar.cli.output import (
    EXIT_INTERRUPTED,
    JSON_OPTION,
    fail,
    fields,
    note,
    print_json,
    table,
    text,
    when,
)

if TYPE_CHECKING:
    import openai
    from openai.types.fine_tuning import FineTuningJob

app = typer.Typer(help="Create, watch and control fine-tuning jobs.", no_args_is_help=True)

JOB_ARG = typer.Argument(..., help="The job id (ftjob-...).")
INTERVAL = typer.Option(1.0, "--interval", min=0.05, help="Seconds between polls.")


def _hyper(value: str, kind: type[int] | type[float], option: str) -> int | float | str:
    if value == "auto":
        return "auto"
    try:
        number = kind(value)
    except ValueError:
        raise typer.BadParameter(f"must be 'auto' or a number, not {value!r}", param_hint=option) from None
    if number <= 0:
        raise typer.BadParameter("must be positive", param_hint=option)
    return number


def _file_id(client: openai.OpenAI, value: str, option: str, quiet: bool) -> str:
    """A local path is uploaded first; anything else must be a file id."""
    path = Path(value)
    if path.is_file():
        with path.open("rb") as f:
            fid = client.files.create(file=f, purpose="fine-tune").id
        if not quiet:
            note(f"Uploaded {path} as {fid}")
        return fid
    if value.startswith("file-"):
        return value
    raise typer.BadParameter(f"{value!r} is neither a local file nor a file id", param_hint=option)


def _job_row(j: FineTuningJob) -> tuple[Any, ...]:
    return (j.id, j.model, j.status, j.fine_tuned_model, when(j.created_at), when(j.finished_at))


def _finish(job: FineTuningJob, json_out: bool) -> None:
    """Print how a followed job ended; exit 1 unless it succeeded."""
    if json_out:
        print_json(job)
    if job.status == "succeeded":
        if not json_out:
            typer.echo(f"Fine-tuned model: {job.fine_tuned_model}")
        return
    error = job.error
    code = (error.code if error else None) or job.status
    message = (error.message if error else None) or f"job {job.id} was {job.status}"
    fail(code, message)


def _follow(client: openai.OpenAI, job_id: str, interval: float, json_out: bool) -> None:
    from afinar.cli.follow import follow as poll

    try:
        job = poll(client, job_id, interval=interval, quiet=json_out)
    except KeyboardInterrupt:
        note(f"Stopped following; the job goes on (afinar jobs follow {job_id}).")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _finish(job, json_out)


@app.command()
def create(
    model: str = typer.Option(..., "--model", "-m", help="Base model to fine-tune."),
    training_file: str = typer.Option(
        ..., "--training-file", "-t", help="A file id, or a local JSONL to upload."
    ),
    validation_file: str = typer.Option(None, "--validation-file", "-v", help="A file id or local JSONL."),
    method: str = typer.Option("supervised", help="supervised or dpo."),
    epochs: str = typer.Option("auto", "--epochs", help="Number of epochs, or auto."),
    batch_size: str = typer.Option("auto", "--batch-size", help="Batch size, or auto."),
    lr_multiplier: str = typer.Option("auto", "--lr-multiplier", help="Learning-rate multiplier, or auto."),
    suffix: str = typer.Option(None, help="Up to 64 characters added to the model name."),
    seed: int = typer.Option(None, help="Seed for a reproducible run."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow the job until it ends."),
    interval: float = INTERVAL,
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a fine-tuning job (uploading local files first)."""
    if method not in ("supervised", "dpo"):
        raise typer.BadParameter("must be 'supervised' or 'dpo'", param_hint="--method")
    hyper = {
        "n_epochs": _hyper(epochs, int, "--epochs"),
        "batch_size": _hyper(batch_size, int, "--batch-size"),
        "learning_rate_multiplier": _hyper(lr_multiplier, float, "--lr-multiplier"),
    }
    client = make_client()
    body: dict[str, Any] = {
        "model": model,
        "training_file": _file_id(client, training_file, "--training-file", json_out),
        "method": {
            "type": method,
            method: {"hyperparameters": {k: v for k, v in hyper.items() if v != "auto"}},
        },
    }
    if validation_file:
        body["validation_file"] = _file_id(client, validation_file, "--validation-file", json_out)
    if suffix is not None:
        body["suffix"] = suffix
    if seed is not None:
        body["seed"] = seed
    job = client.fine_tuning.jobs.create(**body)
    if follow:
        if not json_out:
            note(f"Created {job.id}")
        _follow(client, job.id, interval, json_out)
        return
    if json_out:
        print_json(job)
        return
    table(["id", "model", "status", "training file"], [(job.id, job.model, job.status, job.training_file)])


@app.command("list")
def list_jobs(
    limit: int = typer.Option(20, min=1, help="At most this many, newest first."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List fine-tuning jobs, newest first."""
    page = make_client().fine_tuning.jobs.list(limit=limit)
    jobs = page.data[:limit]
    if json_out:
        print_json({"object": "list", "data": jobs, "has_more": bool(getattr(page, "has_more", False))})
        return
    table(["id", "model", "status", "fine-tuned model", "created", "finished"], [_job_row(j) for j in jobs])
    if not jobs:
        note("No jobs.")


@app.command()
def show(
    job_id: str = JOB_ARG,
    events: int = typer.Option(10, "--events", min=0, help="How many recent events to show."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show a job: status, files, hyperparameters, error and recent events."""
    client = make_client()
    job = client.fine_tuning.jobs.retrieve(job_id)
    if json_out:
        print_json(job)
        return
    h = job.hyperparameters
    error = job.error
    rows: list[tuple[str, Any]] = [
        ("id", job.id),
        ("status", job.status),
        ("model", job.model),
        ("fine-tuned model", job.fine_tuned_model),
        ("training file", job.training_file),
        ("validation file", job.validation_file),
        ("method", job.method.type if job.method else None),
        (
            "hyperparameters",
            f"epochs {text(h.n_epochs)}, batch size {text(h.batch_size)}, "
            f"lr multiplier {text(h.learning_rate_multiplier)}",
        ),
        ("seed", job.seed),
        ("suffix", getattr(job, "user_provided_suffix", None)),
        ("trained tokens", job.trained_tokens),
        ("created", when(job.created_at)),
        ("estimated finish", when(job.estimated_finish)),
        ("finished", when(job.finished_at)),
    ]
    if error and (error.code or error.message):
        rows.append(("error", f"{error.code}: {error.message}"))
    fields(rows)
    if events:
        recent = list(reversed(client.fine_tuning.jobs.list_events(job_id, limit=events).data))
        if recent:
            table(
                ["time", "level", "message"],
                [(when(e.created_at), e.level, e.message) for e in recent],
                title="Recent events",
            )


@app.command()
def results(
    job_id: str = JOB_ARG,
    output: Path = typer.Option(
        None, "--output", "-o", dir_okay=False, help="Write the CSV to this file, not standard output."
    ),
) -> None:
    """Print a succeeded job's step metrics: its ``fine-tune-results`` CSV, as plain CSV.

    The server sends the file base64-encoded, as OpenAI does (unless AFINAR_RESULTS_CSV_BASE64=false);
    either way this prints the decoded CSV.
    """
    from afinar.services.results import plain_csv

    client = make_client()
    job = client.fine_tuning.jobs.retrieve(job_id)
    if not job.result_files:
        fail("no_results", f"the job {job_id} has no results file yet (it is {job.status})")
    data = plain_csv(client.files.content(job.result_files[0]).read())
    if output is None:
        typer.echo(data.decode(), nl=False)
        return
    output.write_bytes(data)
    note(f"Wrote {output}")


def _control(action: str, job_id: str, json_out: bool) -> None:
    jobs = make_client().fine_tuning.jobs
    job = getattr(jobs, action)(job_id)
    if json_out:
        print_json(job)
        return
    typer.echo(f"{job.id}: {job.status}")


@app.command()
def cancel(job_id: str = JOB_ARG, json_out: bool = JSON_OPTION) -> None:
    """Cancel a job (its training process is stopped)."""
    _control("cancel", job_id, json_out)


@app.command()
def pause(job_id: str = JOB_ARG, json_out: bool = JSON_OPTION) -> None:
    """Pause a running job at a checkpoint."""
    _control("pause", job_id, json_out)


@app.command()
def resume(job_id: str = JOB_ARG, json_out: bool = JSON_OPTION) -> None:
    """Resume a paused job from its checkpoint."""
    _control("resume", job_id, json_out)


@app.command()
def follow(job_id: str = JOB_ARG, interval: float = INTERVAL, json_out: bool = JSON_OPTION) -> None:
    """Watch a job with a progress bar (step, loss, ETA) until it ends; print the model name.

    Exits 0 when the job succeeded, 1 when it failed or was cancelled.
    """
    _follow(make_client(), job_id, interval, json_out)
