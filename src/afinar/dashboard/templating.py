"""The Jinja environment (templates ship inside the package) and the filters pages use."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from afinar import __version__
from afinar.dashboard.evalview import item_text, percent, points
from afinar.dashboard.modelcard import gate_rule

STATUS_LABEL = {
    "validating_files": "Validating files",
    "queued": "Queued",
    "running": "Running",
    "paused": "Paused",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def when(ts: int | float | None) -> str:
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def until(ts: int | None) -> str:
    return "—" if not ts else duration(ts - time.time())


def number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} B"


def usd(micros: int | None) -> str:
    """Micro-dollars as ``$1.23`` (more digits under a cent)."""
    if micros is None:
        return "—"
    dollars = micros / 1_000_000
    return f"${dollars:.4f}" if 0 < micros < 10_000 else f"${dollars:,.2f}"


def status_label(status: str) -> str:
    return STATUS_LABEL.get(status, status.replace("_", " ").capitalize())


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("afinar.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        duration=duration,
        until=until,
        number=number,
        size=size,
        usd=usd,
        status_label=status_label,
        percent=percent,
        points=points,
        pretty=item_text,
        gate_rule=gate_rule,
    )
    env.globals.update(version=__version__, number=number, usd=usd)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
