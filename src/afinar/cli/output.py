"""How the client commands print: ``--json`` for scripts, rich tables and lines for people.

With ``--json`` a command prints exactly one JSON document on stdout (progress and notes go to
stderr), so ``afinar jobs show ftjob-... --json | jq .status`` works. Errors are one line on
stderr, ``error: <code>: <message>``, with exit status 1 (2 for a mistake in the command line).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

EXIT_FAILED = 1  # the server said no, the job failed, the file has errors
EXIT_USAGE = 2  # a mistake in the command line (click's own code for usage errors)
EXIT_INTERRUPTED = 130

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document for scripts instead of tables.")


def out() -> Console:
    """Console on stdout (made per call, so it follows whatever stdout is at the time)."""
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def plain(obj: Any) -> Any:
    """SDK objects (pydantic models), lists and dicts of them, as JSON-ready values."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, list | tuple):
        return [plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(plain(obj), indent=2, ensure_ascii=False))


def when(ts: int | None) -> str:
    """A Unix-seconds timestamp in local time, or ``-``."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta(estimated_finish: int | None) -> str:
    return duration(estimated_finish - time.time()) if estimated_finish else "-"


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        # The first column is the id a user copies: never cut it.
        t.add_column(name, no_wrap=i == 0, overflow="fold")
    for row in rows:
        t.add_row(*(text(v) for v in row))
    out().print(t)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """A two-column key/value listing (``jobs show``)."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in pairs:
        t.add_row(key, text(value))
    out().print(t)


def note(message: str) -> None:
    """A line for people on stderr (so it never mixes into ``--json`` output)."""
    err().print(message, markup=False, soft_wrap=True)


def fail(code: str, message: str, exit_code: int = EXIT_FAILED) -> NoReturn:
    err().print(f"error: {code}: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(exit_code)
