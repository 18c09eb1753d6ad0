"""Testing criteria: checked once when an eval is created, then graded item by item.

Supported (OpenAI's shapes): ``string_check`` (eq, ne, like, ilike), ``text_similarity`` (see
``similarity``), ``label_model`` and ``score_model`` (a model this organisation may use is the
judge). Additive: ``sql_execution`` (BIRD's execution accuracy against an uploaded SQLite file).
``python`` graders are refused: running customers' code is not offered.

A grader returns a :class:`Result`; a grader that cannot decide (a placeholder missing from the
item, a judge that answered no label, a reference query that fails) raises :class:`GradeError`,
and the item counts as *errored*.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afinar.errors import InvalidRequest
from afinar.evals import similarity, sqlexec
from afinar.evals import template as tpl

TYPES = ("string_check", "text_similarity", "label_model", "score_model", "sql_execution")
OPERATIONS = ("eq", "ne", "like", "ilike")
JUDGE_ROLES = ("system", "developer", "user", "assistant")
DEFAULT_JUDGE_MAX_TOKENS = 16


class GradeError(Exception):
    """The grader could not decide this item."""


@dataclass
class Result:
    name: str
    type: str
    score: float
    passed: bool
    sample: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "score": self.score,
            "passed": self.passed,
            "sample": self.sample,
            **self.extra,
        }


# --- checking at creation -----------------------------------------------------------------------


def _str(raw: dict[str, Any], key: str, param: str, *, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise InvalidRequest(f"Missing or invalid '{key}' (a string is required).", param=f"{param}.{key}")
    return value


def _number(raw: dict[str, Any], key: str, param: str, *, default: float | None = None) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"'{key}' must be a number.", param=f"{param}.{key}")
    return float(value)


def _content_text(content: Any, param: str) -> str:
    """A judge message's content: a string, an ``input_text``/``output_text`` part, or a list of them."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and content.get("type") in ("input_text", "output_text", "text"):
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(_content_text(part, param) for part in content)
    raise InvalidRequest(
        "Only text content is supported in grader messages (this server is text-only).", param=param
    )


def messages(raw: Any, param: str, *, allow_sample: bool = True) -> list[dict[str, str]]:
    """Chat messages with template strings, normalised to ``{"role", "content"}`` text."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("Expected a non-empty array of messages.", param=param)
    out = []
    for i, msg in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in JUDGE_ROLES:
            raise InvalidRequest(
                f"Each message needs a role among {list(JUDGE_ROLES)}.", param=f"{where}.role"
            )
        text = _content_text(msg.get("content"), f"{where}.content")
        tpl.check(text, f"{where}.content", allow_sample=allow_sample)
        out.append({"role": str(msg["role"]), "content": text})
    return out


def check_criterion(raw: Any, index: int) -> dict[str, Any]:
    """The stored (and echoed) form of one criterion; 400 for anything wrong or unsupported."""
    param = f"testing_criteria[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest("Each testing criterion must be an object.", param=param)
    kind = raw.get("type")
    if kind == "python":
        raise InvalidRequest(
            "python graders are not supported: this server does not run customer code.", param=f"{param}.type"
        )
    if kind not in TYPES:
        raise InvalidRequest(
            f"Unsupported testing criterion type {kind!r}; supported: {list(TYPES)}.", param=f"{param}.type"
        )
    name = raw.get("name", f"{kind}-{index}")
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidRequest(
            "'name' must be a non-empty string of at most 256 characters.", param=f"{param}.name"
        )
    out: dict[str, Any] = {"type": kind, "name": name}
    if kind in ("string_check", "text_similarity", "sql_execution"):
        default_input = "{{sample.output_text}}" if kind == "sql_execution" else None
        out["input"] = _str(raw, "input", param, default=default_input)
        out["reference"] = _str(raw, "reference", param)
        for key in ("input", "reference"):
            tpl.check(out[key], f"{param}.{key}")
    if kind == "string_check":
        op = raw.get("operation")
        if op not in OPERATIONS:
            raise InvalidRequest(
                f"'operation' must be one of {list(OPERATIONS)}.", param=f"{param}.operation"
            )
        out["operation"] = op
    elif kind == "text_similarity":
        metric = raw.get("evaluation_metric")
        if metric not in similarity.METRICS:
            raise InvalidRequest(
                f"'evaluation_metric' must be one of {list(similarity.METRICS)}.",
                param=f"{param}.evaluation_metric",
            )
        threshold = _number(raw, "pass_threshold", param)
        if threshold is None:
            raise InvalidRequest(
                "Missing required parameter: 'pass_threshold'.", param=f"{param}.pass_threshold"
            )
        out.update(evaluation_metric=metric, pass_threshold=threshold)
    elif kind in ("label_model", "score_model"):
        out["model"] = _str(raw, "model", param)
        out["input"] = messages(raw.get("input"), f"{param}.input")
        if kind == "label_model":
            labels, passing = raw.get("labels"), raw.get("passing_labels")
            if (
                not isinstance(labels, list)
                or not labels
                or not all(isinstance(x, str) and x for x in labels)
            ):
                raise InvalidRequest(
                    "'labels' must be a non-empty array of strings.", param=f"{param}.labels"
                )
            if not isinstance(passing, list) or not passing or not set(passing) <= set(labels):
                raise InvalidRequest(
                    "'passing_labels' must be a non-empty subset of 'labels'.",
                    param=f"{param}.passing_labels",
                )
            out.update(labels=list(labels), passing_labels=list(passing))
        else:
            rng = raw.get("range") or [0, 1]
            if (
                not isinstance(rng, list)
                or len(rng) != 2
                or not all(isinstance(x, int | float) for x in rng)
                or rng[0] >= rng[1]
            ):
                raise InvalidRequest("'range' must be two increasing numbers.", param=f"{param}.range")
            out["range"] = [float(rng[0]), float(rng[1])]
            threshold = _number(raw, "pass_threshold", param)
            out["pass_threshold"] = (
                threshold if threshold is not None else (out["range"][0] + out["range"][1]) / 2
            )
            sp = raw.get("sampling_params") or {}
            if not isinstance(sp, dict):
                raise InvalidRequest("'sampling_params' must be an object.", param=f"{param}.sampling_params")
            out["sampling_params"] = {
                k: v for k, v in sp.items() if k in ("temperature", "top_p", "seed", "max_completions_tokens")
            }
    elif kind == "sql_execution":
        fid = raw.get("database_file_id")
        if not isinstance(fid, str) or not fid:
            raise InvalidRequest(
                "Missing required parameter: 'database_file_id' (an uploaded SQLite file).",
                param=f"{param}.database_file_id",
            )
        timeout = int(_number(raw, "timeout_ms", param, default=sqlexec.DEFAULT_TIMEOUT_MS) or 0)
        max_rows = int(_number(raw, "max_rows", param, default=sqlexec.DEFAULT_MAX_ROWS) or 0)
        if not 1 <= timeout <= sqlexec.MAX_TIMEOUT_MS:
            raise InvalidRequest(
                f"'timeout_ms' must be between 1 and {sqlexec.MAX_TIMEOUT_MS}.", param=f"{param}.timeout_ms"
            )
        if not 1 <= max_rows <= sqlexec.MAX_ROWS:
            raise InvalidRequest(
                f"'max_rows' must be between 1 and {sqlexec.MAX_ROWS}.", param=f"{param}.max_rows"
            )
        out.update(
            database_file_id=fid,
            timeout_ms=timeout,
            max_rows=max_rows,
            ordered=bool(raw.get("ordered", False)),
        )
    return out


def check_criteria(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'testing_criteria' must be a non-empty array.", param="testing_criteria")
    if len(raw) > 32:
        raise InvalidRequest("An eval may have at most 32 testing criteria.", param="testing_criteria")
    out = [check_criterion(c, i) for i, c in enumerate(raw)]
    names = [c["name"] for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidRequest(
            f"Testing criteria need distinct names; repeated: {dupes}.", param="testing_criteria"
        )
    return out


# --- grading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeAnswer:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


# (model, messages, sampling body fields, usage key) -> the judge's answer
Judge = Callable[[str, list[dict[str, str]], dict[str, Any], str], JudgeAnswer]
# database file id -> a local path of the SQLite file
DatabasePath = Callable[[str], Path]


@dataclass
class Grading:
    """What graders need from outside: a judge, the customer's databases (opened once per run)."""

    judge: Judge
    database_path: DatabasePath
    _conns: dict[str, Any] = field(default_factory=dict)

    def connection(self, file_id: str) -> Any:
        if file_id not in self._conns:
            try:
                path = self.database_path(file_id)
            except Exception as exc:
                raise GradeError(f"the database file {file_id} cannot be read: {exc}") from None
            if not sqlexec.is_sqlite_file(path):
                raise GradeError(f"the file {file_id} is not a SQLite database")
            self._conns[file_id] = sqlexec.open_readonly(path)
        return self._conns[file_id]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def _render(text: str, ctx: dict[str, Any]) -> str:
    try:
        return tpl.render(text, ctx)
    except tpl.TemplateError as exc:
        raise GradeError(str(exc)) from None


def string_check(c: dict[str, Any], ctx: dict[str, Any]) -> Result:
    a, b = _render(c["input"], ctx), _render(c["reference"], ctx)
    op = c["operation"]
    passed = {"eq": a == b, "ne": a != b, "like": b in a, "ilike": b.lower() in a.lower()}[op]
    return Result(c["name"], c["type"], 1.0 if passed else 0.0, passed)


def text_similarity(c: dict[str, Any], ctx: dict[str, Any]) -> Result:
    a, b = _render(c["input"], ctx), _render(c["reference"], ctx)
    value = similarity.score(c["evaluation_metric"], a, b)
    return Result(c["name"], c["type"], round(value, 6), value >= c["pass_threshold"])


def sql_execution(c: dict[str, Any], ctx: dict[str, Any], g: Grading) -> Result:
    predicted = sqlexec.extract_sql(_render(c["input"], ctx))
    reference = _render(c["reference"], ctx)
    conn = g.connection(c["database_file_id"])
    m = sqlexec.execution_match(
        conn, predicted, reference, timeout_ms=c["timeout_ms"], max_rows=c["max_rows"], ordered=c["ordered"]
    )
    if not m.reference.ok:
        raise GradeError(f"the reference SQL failed: {m.reference.error}")
    extra: dict[str, Any] = {
        "predicted_sql": predicted,
        "predicted_rows": len(m.predicted.rows) if m.predicted.ok else None,
        "reference_rows": len(m.reference.rows),
        "elapsed_ms": m.predicted.elapsed_ms,
    }
    if m.predicted.error is not None:
        extra["error"] = m.predicted.error
    elif not m.passed:
        extra["predicted_preview"] = sqlexec.preview(m.predicted.rows)
        extra["reference_preview"] = sqlexec.preview(m.reference.rows)
    return Result(c["name"], c["type"], 1.0 if m.passed else 0.0, m.passed, extra=extra)


def _judge_messages(c: dict[str, Any], ctx: dict[str, Any], instruction: str) -> list[dict[str, str]]:
    rendered = [{"role": m["role"], "content": _render(m["content"], ctx)} for m in c["input"]]
    return [{"role": "system", "content": instruction}, *rendered]


def _judge_sample(msgs: list[dict[str, str]], answer: JudgeAnswer) -> dict[str, Any]:
    return {
        "input": msgs,
        "output": [{"role": "assistant", "content": answer.text}],
        "model": answer.model,
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            "cached_tokens": 0,
        },
    }


def pick_label(text: str, labels: list[str]) -> str | None:
    """The label the judge answered: an exact answer first, else the label mentioned earliest."""
    clean = text.strip().strip("\"'`.*!").strip()
    for label in labels:
        if clean.lower() == label.lower():
            return label
    best: tuple[int, str] | None = None
    for label in labels:
        m = re.search(r"(?<![\w])" + re.escape(label.lower()) + r"(?![\w])", text.lower())
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), label)
    return best[1] if best else None


def label_model(c: dict[str, Any], ctx: dict[str, Any], g: Grading, key: str) -> Result:
    labels = c["labels"]
    instruction = (
        "You are a grader. Read the conversation and answer with exactly one of these labels, "
        "and nothing else: " + ", ".join(labels) + "."
    )
    msgs = _judge_messages(c, ctx, instruction)
    answer = g.judge(
        c["model"], msgs, {"temperature": 0, "max_completion_tokens": DEFAULT_JUDGE_MAX_TOKENS}, key
    )
    sample = _judge_sample(msgs, answer)
    label = pick_label(answer.text, labels)
    if label is None:
        raise GradeError(f"the judge {c['model']} answered no label of {labels}: {answer.text[:200]!r}")
    passed = label in c["passing_labels"]
    return Result(c["name"], c["type"], 1.0 if passed else 0.0, passed, sample=sample, extra={"label": label})


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def score_model(c: dict[str, Any], ctx: dict[str, Any], g: Grading, key: str) -> Result:
    lo, hi = c["range"]
    instruction = (
        f"You are a grader. Read the conversation and answer with a single number from {lo:g} "
        f"to {hi:g} (higher is better), and nothing else."
    )
    msgs = _judge_messages(c, ctx, instruction)
    sp = c.get("sampling_params") or {}
    body: dict[str, Any] = {
        "temperature": sp.get("temperature", 0),
        "max_completion_tokens": sp.get("max_completions_tokens") or DEFAULT_JUDGE_MAX_TOKENS,
    }
    for k in ("top_p", "seed"):
        if k in sp:
            body[k] = sp[k]
    answer = g.judge(c["model"], msgs, body, key)
    match = _NUMBER.search(answer.text)
    if match is None:
        raise GradeError(f"the judge {c['model']} answered no score: {answer.text[:200]!r}")
    value = min(hi, max(lo, float(match.group())))
    return Result(
        c["name"], c["type"], value, value >= c["pass_threshold"], sample=_judge_sample(msgs, answer)
    )


def grade(c: dict[str, Any], ctx: dict[str, Any], g: Grading, key: str) -> Result:
    """Grade one item with one criterion; ``key`` names the judge call for metering (idempotent)."""
    kind = c["type"]
    if kind == "string_check":
        return string_check(c, ctx)
    if kind == "text_similarity":
        return text_similarity(c, ctx)
    if kind == "sql_execution":
        return sql_execution(c, ctx, g)
    if kind == "label_model":
        return label_model(c, ctx, g, key)
    if kind == "score_model":
        return score_model(c, ctx, g, key)
    raise GradeError(f"unsupported criterion type {kind!r}")  # pragma: no cover - checked at creation
