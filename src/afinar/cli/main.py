"""The ``afinar`` command: serve, worker, and client commands over the official SDK."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from afinar.cli import admin, chat, evals, files, jobs, models, usage
from afinar.cli.client import explain
from afinar.cli.output import fail
from afinar.config import Settings

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    from afinar.services.container import Container


class _Commands(TyperGroup):
    """Turns an error from the SDK, in any client command, into one line and exit status 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except Exception as exc:
            explained = explain(exc)
            if explained is None:
                raise
            fail(*explained)


app = typer.Typer(
    cls=_Commands, help="Afinar: self-hosted fine-tuning with the OpenAI API.", no_args_is_help=True
)
console = Console()


def _container(settings: Settings) -> Container:
    from afinar.services.container import Container

    c = Container(settings)
    c.migrate()
    c.keys  # noqa: B018 - load the master key now (a bad one fails at start; a generated one warns)
    return c


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (AFINAR_HOST, default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (AFINAR_PORT, default 8000)."),
    worker: bool = typer.Option(True, help="Run an embedded worker in this process."),
) -> None:
    """Start the API, the dashboard and an embedded worker on the configured data directory."""
    import threading

    import uvicorn

    from afinar.catalog.ml_stack import import_ml_stack
    from afinar.inference.backends import resolve_backend
    from afinar.inference.openmp import shorten_spin_for_serving
    from afinar.server import create_app
    from afinar.services.orgs import bootstrap
    from afinar.worker.loop import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if resolve_backend(settings) == "llamacpp":
        shorten_spin_for_serving()  # before torch or llama.cpp load OpenMP (inference/openmp.py)
    host = host or settings.host
    port = port or settings.port
    c = _container(settings)
    generated = bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    if generated:
        console.print(
            f"[bold green]Created organisation '{settings.default_org_name}'.[/] Its API key "
            f"(shown once, keep it):\n  [bold]{generated}[/]"
        )
    console.print(f"Afinar on http://{host}:{port}/v1  (data in {settings.data_dir.resolve()})")
    w = Worker(c) if worker and settings.embedded_worker else None
    ready = threading.Event()
    api = create_app(c, ready=ready)  # requests wait for ``ready``; /health answers at once

    def prepare() -> None:
        """Import the ML stack on this one thread before any request, job or warm-up can: two
        threads importing transformers at once fail (catalog/ml_stack.py). Then start them."""
        try:
            import_ml_stack()
        finally:
            ready.set()
        if w and not w.stop.is_set():
            w.start()
        if settings.warm_models:
            _warm_default_model(c)

    threading.Thread(target=prepare, name="afinar-prepare", daemon=True).start()
    try:
        uvicorn.run(api, host=host, port=port, log_level="info")
    finally:
        if w:
            w.shutdown()
        c.close()


def _warm_default_model(c: Container) -> None:
    """Convert the bundled model in the background so the first job or chat does not wait for it."""
    from afinar.catalog.ml_stack import import_ml_stack

    import_ml_stack()  # done by ``serve`` already; never import the stack from two threads at once
    for model_id in c.catalog.ids():
        entry = c.catalog.get(model_id)
        if entry is not None and entry.source == "bundled":
            try:
                path = c.catalog.local_path(entry, c.settings.models_dir)
            except Exception:
                logging.getLogger("afinar").exception("could not prepare %s", model_id)
                continue
            _warm_engine(c, path, entry.context_length)


def _warm_engine(c: Container, path: Path, context_length: int) -> threading.Thread | None:
    """On the llama.cpp backend, convert the base to GGUF and start its server in a background
    thread (``AFINAR_LLAMACPP_WARM``): the first chat does not wait ~a minute for it."""
    from afinar.inference.backends import resolve_backend

    if not c.settings.llamacpp_warm or resolve_backend(c.settings) != "llamacpp":
        return None  # the other backends load on first use; never build an engine for nothing
    warm = getattr(c.engine, "warm", None)
    return warm(path, context_length) if warm is not None else None


@app.command("worker")
def worker_cmd() -> None:
    """Run a worker alone (scale-out: many workers share one database); it runs every lane."""
    from afinar.worker.loop import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    c = _container(Settings())
    s = c.settings
    console.print(
        f"Afinar worker started: {s.worker_training_slots} training and {s.worker_short_slots} "
        "short-work (validation, eval run) threads; Ctrl-C to stop."
    )
    from afinar.catalog.ml_stack import import_ml_stack

    import_ml_stack()  # on this thread, before any lane can import it (catalog/ml_stack.py)
    try:
        Worker(c).run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


# Client commands: talk to a server through the official SDK (see cli/client.py).
app.add_typer(files.app, name="files")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(evals.app, name="evals")
app.add_typer(admin.app, name="admin")
app.command("chat")(chat.chat)
app.command("usage")(usage.usage)


if __name__ == "__main__":
    app()
