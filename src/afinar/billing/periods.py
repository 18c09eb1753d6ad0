"""UTC days and months in Unix seconds: the free allowance is per UTC day, spend limits per UTC month."""

from __future__ import annotations

from datetime import UTC, date, datetime

DAY = 86_400


def utc_day(ts: float) -> date:
    return datetime.fromtimestamp(int(ts), UTC).date()


def day_start(ts: float) -> int:
    return int(ts) - int(ts) % DAY


def month_start(ts: float) -> int:
    d = utc_day(ts)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())


def next_month_start(ts: float) -> int:
    d = utc_day(ts)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())
