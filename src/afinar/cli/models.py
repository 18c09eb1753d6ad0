"""``afinar models``: list the base and fine-tuned models you can use, delete or export fine-tuned ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, print_json, table, when

app = typer.Typer(help="List, delete and export models.", no_args_is_help=True)


@app.command("list")
def list_models(json_out: bool = JSON_OPTION) -> None:
    """List base models, fine-tuned models and their checkpoints."""
    page = make_client().models.list()
    models = list(page.data)
    if json_out:
        print_json({"object": "list", "data": models})
        return
    table(["id", "owned by", "created"], [(m.id, m.owned_by, when(m.created)) for m in models])


@app.command()
def delete(
    model: str = typer.Argument(..., help="A fine-tuned model name (ft:...)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete a fine-tuned model."""
    result = make_client().models.delete(model)
    if json_out:
        print_json(result)
        return
    typer.echo(f"Deleted {result.id}")


@app.command()
def export(
    model: str = typer.Argument(..., help="A fine-tuned model or checkpoint name (ft:...)."),
    fmt: str = typer.Option(
        ...,
        "--format",
        help="gguf (merged GGUF, GGUF LoRA and an Ollama Modelfile), merged (safetensors folder) "
        "or peft (the adapter).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the zip (default: ./<model>-<format>.zip)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Download a fine-tuned model as a zip that runs outside Afinar, with its model card."""
    from openai._constants import RAW_RESPONSE_HEADER  # the SDK's switch for an unread, streamed body

    target = output or Path(f"{model.replace(':', '_')}-{fmt}.zip")
    part = target.with_name(f".{target.name}.part")
    response: Any = make_client().get(
        f"/afinar/models/{model}/export",
        cast_to=bytes,
        options={"params": {"format": fmt}, "headers": {RAW_RESPONSE_HEADER: "stream"}},
    )
    written = 0
    try:
        with part.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        part.replace(target)
    finally:
        response.close()
        part.unlink(missing_ok=True)
    if json_out:
        print_json({"model": model, "format": fmt, "path": str(target), "bytes": written})
        return
    typer.echo(f"Wrote {target} ({written} bytes)")
