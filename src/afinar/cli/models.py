"""``afinar models``: list the base and fine-tuned models you can use, delete fine-tuned ones."""

from __future__ import annotations

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, print_json, table, when

app = typer.Typer(help="List and delete models.", no_args_is_help=True)


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
