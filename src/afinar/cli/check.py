"""``afinar files check``: the server's training-file validation, run offline, as a readable report.

Without ``--model`` only the structure is checked (JSON, roles, formats, weights, duplicates);
with it the base model's tokenizer comes from the catalogue (no server, no network for bundled
and local models) and the report adds token counts, a histogram, truncation and reserved
special-token checks: the numbers a job on this file would see. The verdict is ``job_failure``,
the very function the worker uses, so "OK" here means the job gets past ``validating_files``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from rich.markup import escape

from afinar.cli.output import EXIT_USAGE, err, fail, out, print_json
from afinar.config import Settings
from afinar.datasets.report import FILE_LEVEL, Problem, Stats, ValidationReport
from afinar.datasets.validation import Method, job_failure, validate_file

_BAR_WIDTH = 30
_SHOW_ERRORS = 100  # everything validate_file keeps
_SHOW_WARNINGS = 20


def _tokenizer(model: str, settings: Settings) -> tuple[Any, int, str]:
    """(tokenizer, context length, base model id) for a catalogue model or a fine-tuned name."""
    from afinar.catalog.registry import Catalog
    from afinar.ids import parse_model_name

    try:
        catalog = Catalog.load(settings.catalog_file)
    except (OSError, ValueError) as exc:  # a missing or malformed operator catalogue (TOML)
        fail("catalog_error", f"cannot read the model catalogue {settings.catalog_file}: {exc}")
    base = parse_model_name(model).base
    entry = catalog.get(base)
    if entry is None:
        known = ", ".join(catalog.ids()) or "none"
        fail("model_not_available", f"Model {model} is not in the catalogue (known: {known}).", EXIT_USAGE)
    from afinar.catalog.tokenizers import load_tokenizer

    with err().status(f"Loading the tokenizer of {base}…"):
        try:
            tokenizer = load_tokenizer(catalog.local_path(entry, settings.models_dir))
        except Exception as exc:  # missing weights, a broken download: say so in one line
            fail("tokenizer_error", f"cannot load the tokenizer of {base}: {exc}")
    return tokenizer, entry.context_length, base


def run_check(path: Path, *, model: str | None, method: str, validation: bool, json_out: bool) -> bool:
    """Validate, print, and say whether a job on this file would get past validation."""
    tokenizer: Any = None
    context_length: int | None = None
    base: str | None = None
    if model:
        tokenizer, context_length, base = _tokenizer(model, Settings())
    report = validate_file(
        path, method=cast(Method, method), tokenizer=tokenizer, context_length=context_length
    )
    param = "validation_file" if validation else "training_file"
    failure = job_failure(report, param=param)
    if json_out:
        verdict = {
            "ok": failure is None,
            "code": failure[0] if failure else None,
            "message": failure[1] if failure else None,
        }
        print_json({"file": str(path), "model": base, **report.to_dict(), "verdict": verdict})
    else:
        render(path, report, base, failure)
    return failure is None


def _stats(s: Stats | None) -> str:
    if s is None:
        return "-"
    return f"min {s.min}, mean {s.mean:.1f}, p10 {s.p10:.0f}, p90 {s.p90:.0f}, max {s.max}"


def _where(p: Problem) -> str:
    return "file" if p.example == FILE_LEVEL else f"line {p.example}"


def _print(line: str) -> None:
    out().print(line, soft_wrap=True)  # no wrapping: a problem stays on one line, greppable


def render(path: Path, report: ValidationReport, base: str | None, failure: tuple[str, str] | None) -> None:
    _print(
        f"[bold]{escape(str(path))}[/]: {report.format} format, method {report.method}"
        + (
            f", model {escape(base)} (context {report.context_length})"
            if base
            else " (structure only: pass --model for token counts)"
        )
    )
    _print(f"  examples:              {report.n_examples}")
    _print(f"  messages per example:  {_stats(report.messages_per_example)}")
    if report.has_token_counts:
        _print(
            f"  tokens:                {report.total_tokens} total, {report.trained_tokens} trained, "
            f"{report.billable_tokens_per_epoch} billable per epoch"
        )
        _print(f"  tokens per example:    {_stats(report.tokens_per_example)}")
        if report.n_truncated:
            _print(
                f"  truncated:             {report.n_truncated} examples lose "
                f"{report.truncated_tokens} tokens"
            )
        top = max((b.count for b in report.token_histogram), default=0)
        if top:
            _print("  token histogram (tokens per example):")
            last = max(i for i, b in enumerate(report.token_histogram) if b.count)
            for b in report.token_histogram[: last + 1]:
                label = f"{b.low}–{b.high - 1}" if b.high is not None else f"{b.low}+"
                bar = "█" * round(_BAR_WIDTH * b.count / top) if b.count else ""
                _print(f"    {label:>12} {bar:<{_BAR_WIDTH}} {b.count}")
    _problems("Errors", "red", report.errors, report.n_errors_total, _SHOW_ERRORS)
    _problems("Warnings", "yellow", report.warnings, report.n_warnings_total, _SHOW_WARNINGS)
    if failure is None:
        _print("[bold green]OK[/]: a fine-tuning job can start on this file.")
    else:
        code, message = failure
        _print(f"[bold red]FAILED[/] {escape(code)}: {escape(message)}")


def _problems(title: str, colour: str, problems: tuple[Problem, ...], total: int, show: int) -> None:
    if not total:
        return
    problems = problems[:show]
    _print(f"[bold {colour}]{title} ({total})[/]")
    for p in problems:
        _print(f"  {_where(p)}: {escape(p.message)}  [dim]\\[{escape(p.code)}][/]")
    if total > len(problems):
        _print(f"  … and {total - len(problems)} more (--json lists up to 100)")
