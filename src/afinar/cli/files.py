"""``afinar files``: upload, list, check (offline) and delete training files."""

from __future__ import annotations

from pathlib import Path

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, note, print_json, table, when

app = typer.Typer(help="Upload, list, check and delete files.", no_args_is_help=True)


@app.command()
def upload(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A JSONL file."),
    purpose: str = typer.Option("fine-tune", help="The file's purpose."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Upload a file; prints its id."""
    client = make_client()
    with path.open("rb") as f:
        obj = client.files.create(file=f, purpose=purpose)  # type: ignore[arg-type]
    if json_out:
        print_json(obj)
        return
    table(["id", "filename", "bytes", "purpose"], [(obj.id, obj.filename, obj.bytes, obj.purpose)])


@app.command("list")
def list_files(
    purpose: str = typer.Option(None, help="Only files with this purpose."),
    limit: int = typer.Option(100, min=1, help="At most this many, newest first."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List files, newest first."""
    client = make_client()
    page = client.files.list(purpose=purpose, limit=limit) if purpose else client.files.list(limit=limit)
    files = page.data[:limit]
    if json_out:
        print_json({"object": "list", "data": files, "has_more": bool(getattr(page, "has_more", False))})
        return
    table(
        ["id", "filename", "purpose", "bytes", "created"],
        [(f.id, f.filename, f.purpose, f.bytes, when(f.created_at)) for f in files],
    )
    if not files:
        note("No files.")


@app.command()
def delete(
    file_id: str = typer.Argument(..., help="The file id (file-...)."), json_out: bool = JSON_OPTION
) -> None:
    """Delete a file."""
    result = make_client().files.delete(file_id)
    if json_out:
        print_json(result)
        return
    typer.echo(f"Deleted {result.id}")


@app.command()
def check(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A JSONL file."),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Base model from the catalogue: adds token counts, context-length and special-token checks.",
    ),
    method: str = typer.Option("supervised", help="supervised (chat) or dpo (preference pairs)."),
    validation: bool = typer.Option(False, "--validation", help="Check it as a validation file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Validate a training file offline, as a job would; exits 1 when a job on it would fail."""
    from afinar.cli.check import run_check

    if method not in ("supervised", "dpo"):
        raise typer.BadParameter("must be 'supervised' or 'dpo'", param_hint="--method")
    ok = run_check(path, model=model, method=method, validation=validation, json_out=json_out)
    if not ok:
        raise typer.Exit(1)
