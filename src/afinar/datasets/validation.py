"""Validate a JSONL training file before any compute is spent, and say why a job must fail.

``validate_file`` streams the file line by line in binary mode, never reading it whole, in
memory bounded whatever the number of examples: one line at a time, at most two batches of
examples (256 examples or 256 KB of JSON each) being rendered and tokenized (``token_counts``), a
bounded duplicate detector (``duplicates``: exact and naming the first example up to 393,216
examples, "likely" past that; 10 MiB at most) and bounded distributions for the statistics
(``distribution``: percentiles exact below 65,536 tokens). Token counts go through
``trained_spans``/``tokenize_many``/``encode_tokens``, the functions ``encode_chat`` (and so
the trainer) uses, i.e. the base model's own chat template: they are the numbers training will
see (not tiktoken estimates). ``validate_lines`` takes any iterable of raw lines (a blob
stream, say); ``validate_file`` opens a path and hands it over (or passes an iterable on).

Numbering: ``Example N`` is the 1-based *line number* in the file, so it can be found in an
editor; blank lines are skipped (they are not examples, but they keep the numbering honest).
``message M`` is the 1-based index into the example's ``messages`` (``input.messages`` for
preference lines). A problem about the whole file has ``example == 0``.

Job errors (``job_failure``), following contract §3.4:

* method/format mismatch and structural problems → ``invalid_training_file``;
* an unknown key (``Example 1 contains an extra "weight".``) or a reserved special-token
  string in the text → ``invalid_file_format`` ("a file format error in the training file");
* fewer than 10 training examples → ``invalid_n_examples`` (structural problems are reported
  first, since they say more about what to fix).

For a validation file (``param="validation_file"``) the same rules apply with the code
``invalid_validation_file`` in place of ``invalid_training_file`` (the contract names that code
for the validation-file family), ``invalid_file_format`` keeps its code with "validation file"
in the sentence, and the minimum is 1 example instead of 10.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Literal

from afinar.datasets.checks import FILE_FORMAT_CODES, CheckedExample, check_chat, check_preference, classify
from afinar.datasets.distribution import Distribution
from afinar.datasets.duplicates import LIKELY, DuplicateDetector
from afinar.datasets.report import FILE_LEVEL, Problem, ValidationReport
from afinar.datasets.token_counts import PendingExample, TokenCounter, TokenTally

Method = Literal["supervised", "dpo"]
METHOD_FORMAT = {"supervised": "chat", "dpo": "preference"}
FORMAT_METHOD = {"chat": "supervised", "preference": "dpo"}
FORMAT_NAME = {"chat": "fine-tune-chat", "preference": "fine-tune-preference"}
MIN_TRAINING_EXAMPLES = 10
MIN_VALIDATION_EXAMPLES = 1
UNEXPECTED_FORMAT = (
    "Unexpected file format, expected either chat messages (a 'messages' list, method=supervised) "
    "or preference pairs ('input', 'preferred_output', 'non_preferred_output', method=dpo)."
)
_SUMMARY_EXAMPLES = 10  # example numbers listed in a job error's "(and K more problems: ...)"
# Examples are rendered and tokenized in batches of at most this many examples or bytes of
# JSON (one apply_chat_template call per batch; the fast tokenizer encodes a batch on all
# cores). The byte cap bounds a batch's encodings (~100 bytes a token) to a few MB.
TOKENIZE_BATCH_EXAMPLES = 256
TOKENIZE_BATCH_BYTES = 256 * 1024


def special_token_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A regex matching the tokenizer's reserved strings: its special tokens and the added tokens
    flagged special. Non-special added tokens (e.g. ``<think>``) are ordinary text and allowed."""
    tokens = {str(t) for t in getattr(tokenizer, "all_special_tokens", None) or []}
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    tokens |= {str(tok) for tok in decoder.values() if getattr(tok, "special", False)}
    tokens.discard("")
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def mismatch_message(fmt: str, method: str, file_id: str | None = None) -> str:
    """Contract §3.2: a chat file under dpo, or preference data under supervised."""
    name = f"Input file {file_id}" if file_id else "Input file"
    return (
        f"{name} is in the {FORMAT_NAME[fmt]} format, but the specified fine-tuning job is not using "
        f"'{FORMAT_METHOD[fmt]}' as the training method (provided method={method})."
    )


class _Collector:
    """Problems in file order, at most ``cap`` kept, all counted; file-level ones always kept, first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.file_level: list[Problem] = []
        self.lines: list[Problem] = []
        self.counts: Counter[str] = Counter()

    def add(self, problem: Problem) -> None:
        self.counts[problem.code] += 1
        if problem.example == FILE_LEVEL:
            self.file_level.append(problem)
        elif len(self.lines) < self.cap:
            self.lines.append(problem)

    @property
    def kept(self) -> list[Problem]:
        return self.file_level + self.lines

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _parse(raw: bytes, n: int) -> tuple[Any, Problem | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        return None, Problem(
            n,
            None,
            "invalid_utf8",
            f"Example {n} cannot be parsed. Error: line is not valid UTF-8 "
            f"(byte 0x{bad} at offset {exc.start}).",
        )
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, Problem(
            n,
            None,
            "invalid_json",
            f"Example {n} cannot be parsed. Error: line contains invalid json: {exc}.",
        )


def _canonical_hash(obj: Any) -> bytes:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).digest()


def validate_lines(
    lines: Iterable[bytes],
    *,
    method: Method = "supervised",
    tokenizer: Any = None,
    context_length: int | None = None,
    max_problems: int = 100,
    batch_examples: int = TOKENIZE_BATCH_EXAMPLES,
) -> ValidationReport:
    """Validate JSONL given as an iterable of raw lines (e.g. an open binary file, a blob stream)."""
    if method not in METHOD_FORMAT:
        raise ValueError(f"unknown method {method!r}; expected 'supervised' or 'dpo'")
    errors, warnings = _Collector(max_problems), _Collector(max_problems)
    tally = TokenTally(context_length)

    def emit(example: PendingExample) -> None:
        for problem in example.errors:
            errors.add(problem)
        for problem in example.warnings:
            warnings.add(problem)

    with contextlib.ExitStack() as stack:
        counter = stack.enter_context(TokenCounter(tokenizer, tally, emit)) if tokenizer is not None else None
        fmt, n_examples, n_objects, n_messages = _scan(
            lines, method, tokenizer, counter, emit, errors, batch_examples
        )
    if fmt is None and n_objects:
        errors.add(Problem(FILE_LEVEL, None, "unexpected_format", UNEXPECTED_FORMAT))
    return ValidationReport(
        method=method,
        format=fmt or "unknown",
        n_examples=n_examples,
        errors=tuple(errors.kept),
        warnings=tuple(warnings.kept),
        n_errors_total=errors.total,
        n_warnings_total=warnings.total,
        error_counts=dict(errors.counts),
        warning_counts=dict(warnings.counts),
        messages_per_example=n_messages.stats(),
        context_length=context_length,
        **(tally.report_fields() if tokenizer is not None else {}),
    )


def _scan(
    lines: Iterable[bytes],
    method: Method,
    tokenizer: Any,
    counter: TokenCounter | None,
    emit: Callable[[PendingExample], None],
    errors: _Collector,
    batch_examples: int,
) -> tuple[str | None, int, int, Distribution]:
    """Check every line; hand examples to ``counter`` in batches (or straight to ``emit``)."""
    tokens_re = special_token_pattern(tokenizer) if tokenizer is not None else None
    fmt: str | None = None
    duplicates = DuplicateDetector()
    n_examples = n_objects = 0
    n_messages = Distribution()
    pending: list[PendingExample] = []
    pending_bytes = 0
    for n, raw in enumerate(lines, start=1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        n_examples += 1
        ex = PendingExample(n)
        obj, problem = _parse(raw.rstrip(b"\r\n"), n)
        if problem is None and not isinstance(obj, dict):
            problem = Problem(
                n, None, "not_an_object", f"Example {n} must be a JSON object, not {_kind(obj)}."
            )
        if problem is not None:
            ex.errors.append(problem)
        else:
            n_objects += 1
            if fmt is None and (kind := classify(obj)) is not None:
                fmt = kind
                if fmt != METHOD_FORMAT[method]:
                    errors.add(Problem(FILE_LEVEL, None, "format_mismatch", mismatch_message(fmt, method)))
            expected = fmt or METHOD_FORMAT[method]
            checked = (
                check_chat(obj, n, tokens_re) if expected == "chat" else check_preference(obj, n, tokens_re)
            )
            ex.errors.extend(checked.problems)
            if checked.conversations:
                _check_example(checked, obj, n, duplicates, ex.warnings)
                n_messages.add(checked.n_messages)
                ex.conversations = checked.conversations
                pending_bytes += len(raw)
        if counter is None:
            emit(ex)
            continue
        pending.append(ex)
        if len(pending) >= batch_examples or pending_bytes >= TOKENIZE_BATCH_BYTES:
            counter.submit(pending)
            pending, pending_bytes = [], 0
    if counter is not None and pending:
        counter.submit(pending)
    return fmt, n_examples, n_objects, n_messages


def validate_file(
    path: str | os.PathLike[str] | Iterable[bytes],
    *,
    method: Method = "supervised",
    tokenizer: Any = None,
    context_length: int | None = None,
    max_problems: int = 100,
) -> ValidationReport:
    """Validate a JSONL file on disk, streaming it (see the module docstring); an iterable of raw
    lines (a decrypting blob stream, say) is validated as it comes, like ``validate_lines``."""
    kw: dict[str, Any] = {
        "method": method,
        "tokenizer": tokenizer,
        "context_length": context_length,
        "max_problems": max_problems,
    }
    if not isinstance(path, str | os.PathLike):
        return validate_lines(path, **kw)
    with open(path, "rb") as f:
        return validate_lines(f, **kw)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _check_example(
    checked: CheckedExample, obj: Any, n: int, duplicates: DuplicateDetector, warnings: list[Problem]
) -> None:
    if not checked.has_system:
        warnings.append(Problem(n, None, "missing_system_message", f"Example {n} has no system message."))
    if not checked.has_user:
        warnings.append(Problem(n, None, "missing_user_message", f"Example {n} has no user message."))
    if not checked.has_trained_assistant:
        warnings.append(
            Problem(n, None, "no_trained_messages", f"Example {n} has no assistant message with weight 1.")
        )
    first = duplicates.check(_canonical_hash(obj), n)
    if first == LIKELY:
        warnings.append(
            Problem(n, None, "duplicate_example", f"Example {n} is likely a duplicate of an earlier example.")
        )
    elif first is not None:
        warnings.append(
            Problem(n, None, "duplicate_example", f"Example {n} is a duplicate of example {first}.")
        )


def _summary(others: list[Problem], n_more: int) -> str:
    if n_more <= 0:
        return ""
    examples = sorted({p.example for p in others if p.example != FILE_LEVEL})
    shown = ", ".join(str(e) for e in examples[:_SUMMARY_EXAMPLES])
    complete = len(others) == n_more and len(examples) <= _SUMMARY_EXAMPLES
    where = f": examples {shown}{'' if complete else ', …'}" if examples else ""
    noun = "problem" if n_more == 1 else "problems"
    return f" (and {n_more} more {noun}{where})"


def job_failure(
    report: ValidationReport, *, param: str = "training_file", file_id: str | None = None
) -> tuple[str, str] | None:
    """The (error.code, error.message) a job must fail with for this file, or None if it may run."""
    if param not in ("training_file", "validation_file"):
        raise ValueError(f"param must be 'training_file' or 'validation_file', not {param!r}")
    training = param == "training_file"
    which = "training" if training else "validation"
    invalid_code = "invalid_training_file" if training else "invalid_validation_file"
    invalid = f"The job failed due to an invalid {which} file."
    if report.errors or report.n_errors_total:
        mismatch = [p for p in report.errors if p.code == "format_mismatch"]
        if mismatch:
            return invalid_code, f"{invalid} {mismatch_message(report.format, report.method, file_id)}"
        if any(p.code == "unexpected_format" for p in report.errors):
            return invalid_code, f"{invalid} {UNEXPECTED_FORMAT}"
        if not report.errors:  # every problem fell beyond a max_problems of 0
            return invalid_code, f"{invalid} Invalid file format ({report.n_errors_total} problems)."
        first, others = report.errors[0], list(report.errors[1:])
        tail = _summary(others, report.n_errors_total - 1)
        if first.code in FILE_FORMAT_CODES:
            return (
                "invalid_file_format",
                f"The job failed due to a file format error in the {which} file. "
                f"Invalid file format. {first.message}{tail}",
            )
        return invalid_code, f"{invalid} Invalid file format. {first.message}{tail}"
    minimum = MIN_TRAINING_EXAMPLES if training else MIN_VALIDATION_EXAMPLES
    if report.n_examples < minimum:
        noun = "examples" if minimum != 1 else "example"
        return (
            "invalid_n_examples",
            f"{which.capitalize()} file has {report.n_examples} example(s), "
            f"but must have at least {minimum} {noun}",
        )
    return None
