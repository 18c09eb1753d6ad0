"""Run untrusted SQL against a customer's SQLite file: read-only, one statement, time- and row-limited.

Defence in depth, each layer enough on its own for the common attacks:

1. the file is opened through a ``file:…?mode=ro`` URI (SQLite refuses every write), and
   ``PRAGMA query_only`` is switched on before anything else runs;
2. the statement must start with ``SELECT``, ``WITH`` or ``VALUES`` (comments skipped), and only one
   statement runs (text after the first complete statement is dropped, so ``SELECT 1; DROP …``
   runs ``SELECT 1``);
3. an authorizer allows reads, selects, recursive CTEs, functions other than ``load_extension``
   and a short list of read-only pragmas without a value; it denies writes, schema changes,
   ``ATTACH``/``DETACH``, transactions, ``VACUUM`` and every pragma that sets something;
4. ``SQLITE_LIMIT_ATTACHED`` is 0, strings/blobs are capped, and a progress handler interrupts the
   statement when its time is up (an endless recursive CTE ends as "interrupted");
5. at most ``max_rows`` rows are read back.

``execution_match`` is BIRD's execution accuracy: both queries run, and the item passes when the
*sets* of result rows are equal (``ordered=True`` compares the row lists instead).
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 30_000
DEFAULT_MAX_ROWS = 10_000
MAX_ROWS = 100_000
MAX_SQL_CHARS = 100_000
MAX_VALUE_BYTES = 1_000_000

READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "collation_list",
        "database_list",
        "function_list",
        "pragma_list",
    }
)
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_LEADING = ("select", "with", "values")
_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.S)


class SQLRefused(Exception):
    """The statement was not run: not a single read-only query."""


@dataclass
class Outcome:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def extract_sql(text: str) -> str:
    """The SQL in a model's answer: the first fenced block if any, cut after its first statement."""
    match = _FENCE.search(text)
    sql = (match.group(1) if match else text).strip()
    if ";" in sql:
        for i, ch in enumerate(sql):
            if ch == ";" and sqlite3.complete_statement(sql[: i + 1]):
                sql = sql[:i]
                break
    return sql.strip()


def _strip_comments(sql: str) -> str:
    s = sql.lstrip()
    while True:
        if s.startswith("--"):
            s = s.split("\n", 1)[1].lstrip() if "\n" in s else ""
        elif s.startswith("/*"):
            end = s.find("*/")
            s = s[end + 2 :].lstrip() if end >= 0 else ""
        else:
            return s


def _authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        return sqlite3.SQLITE_DENY if name in DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        return sqlite3.SQLITE_OK if name in READ_PRAGMAS and arg2 is None else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


def open_readonly(path: Path) -> sqlite3.Connection:
    uri = "file:" + str(Path(path).resolve()).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_CHARS)
    conn.set_authorizer(_authorizer)
    return conn


SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def run_query(
    conn: sqlite3.Connection,
    sql: str,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Outcome:
    """Run one read-only statement with a deadline; never raises for a bad query."""
    start = time.monotonic()
    body = _strip_comments(sql)
    if not body:
        return Outcome(error="no SQL statement")
    if not body.split(None, 1)[0].lower().lstrip("(").startswith(_LEADING):
        return Outcome(error="refused: only a single SELECT (or WITH … SELECT, VALUES) query may run")
    if len(sql) > MAX_SQL_CHARS:
        return Outcome(error=f"refused: the statement is longer than {MAX_SQL_CHARS} characters")
    deadline = start + timeout_ms / 1000.0
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
    try:
        cur = conn.execute(sql)
        rows = cur.fetchmany(max_rows + 1)
        cur.close()
    except sqlite3.Warning as exc:  # e.g. "You can only execute one statement at a time."
        return Outcome(error=str(exc), elapsed_ms=_ms(start))
    except sqlite3.Error as exc:
        message = str(exc)
        if "interrupted" in message:
            message = f"interrupted: the query ran longer than {timeout_ms} ms"
        return Outcome(error=message, elapsed_ms=_ms(start))
    finally:
        conn.set_progress_handler(None, 0)
    if len(rows) > max_rows:
        return Outcome(error=f"the query returned more than {max_rows} rows", elapsed_ms=_ms(start))
    return Outcome(rows=[tuple(r) for r in rows], elapsed_ms=_ms(start))


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def _key(value: Any) -> tuple[int, Any]:
    """Rows hold mixed types; order them by (type rank, value) so a set compare is well defined."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def same_results(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], *, ordered: bool) -> bool:
    if ordered:
        return a == b
    return set(a) == set(b)


@dataclass(frozen=True)
class Match:
    passed: bool
    predicted: Outcome
    reference: Outcome


def execution_match(
    conn: sqlite3.Connection,
    predicted_sql: str,
    reference_sql: str,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_rows: int = DEFAULT_MAX_ROWS,
    ordered: bool = False,
) -> Match:
    reference = run_query(
        conn, reference_sql, timeout_ms=max(timeout_ms, DEFAULT_TIMEOUT_MS), max_rows=max_rows
    )
    predicted = run_query(conn, predicted_sql, timeout_ms=timeout_ms, max_rows=max_rows)
    passed = predicted.ok and reference.ok and same_results(predicted.rows, reference.rows, ordered=ordered)
    return Match(passed, predicted, reference)


def preview(rows: list[tuple[Any, ...]], n: int = 5) -> list[list[Any]]:
    """The first rows, JSON-ready (bytes as hex)."""
    return [[v.hex() if isinstance(v, bytes | bytearray | memoryview) else v for v in r] for r in rows[:n]]


def sort_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda r: tuple(_key(v) for v in r))
