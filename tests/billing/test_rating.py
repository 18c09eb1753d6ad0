"""Pure rating: integer micro-dollars, rounding, the free allowance, the price book, buckets."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from afinar.billing.allowance import AllowancePolicy
from afinar.billing.buckets import aggregate, grid
from afinar.billing.money import cents_to_micros, format_usd, micros_to_dollars
from afinar.billing.periods import month_start, next_month_start, utc_day
from afinar.billing.pricebook import PriceBook, PriceNotFound
from afinar.billing.rating import TrainingItem, cost, rate_training, training_estimate
from afinar.errors import InvalidRequest
from tests.support.clock import DAY, T0


def test_cost_is_integer_micro_dollars_rounded_half_up() -> None:
    assert cost(1_000_000, 25_000_000) == 25_000_000  # $25 per 1M training tokens
    assert cost(1, 25_000_000) == 25
    assert cost(1, 300_000) == 0  # 0.3 µ$ rounds down
    assert cost(2, 300_000) == 1  # 0.6 rounds up
    assert cost(5, 300_000) == 2  # 1.5 rounds half up
    assert cost(2, 3_750_000) == 8  # 7.5 → 8
    assert cost(1, 1_200_000) == 1  # 1.2 → 1
    assert cost(0, 15_000_000) == 0
    with pytest.raises(ValueError):
        cost(-1, 1)


def test_the_guides_worked_example() -> None:
    # 100k tokens × 3 epochs on the mini tier ≈ $0.90 (contract §7).
    book = PriceBook.load()
    assert cost(300_000, book.price("x", "mini").training_per_1m) == 900_000


def test_rounding_is_per_record_and_sums_are_exact() -> None:
    rng = random.Random(1)
    tokens = [rng.randrange(1, 5_000) for _ in range(500)]
    per_record = sum(cost(t, 300_000) for t in tokens)
    assert abs(per_record - sum(tokens) * 300_000 / 1_000_000) <= len(tokens) / 2


def items(*specs: tuple[str, int, int]) -> list[TrainingItem]:
    return [TrainingItem(key, "org-1", "mini", at, tokens, 3_000_000) for key, at, tokens in specs]


def test_allowance_is_consumed_before_paid_tokens_in_time_order() -> None:
    rated = rate_training(items(("b", T0 + 60, 700), ("a", T0, 600)), lambda tier, day: 1_000)
    assert (rated["a"].free_tokens, rated["a"].paid_tokens, rated["a"].cost) == (600, 0, 0)
    assert (rated["b"].free_tokens, rated["b"].paid_tokens, rated["b"].cost) == (400, 300, 900)


def test_allowance_resets_each_utc_day_and_is_per_tier_and_org() -> None:
    specs = [
        TrainingItem("d1", "org-1", "mini", T0, 800, 3_000_000),
        TrainingItem("d1-other-tier", "org-1", "flagship", T0, 800, 25_000_000),
        TrainingItem("d1-other-org", "org-2", "mini", T0, 800, 3_000_000),
        TrainingItem("d2", "org-1", "mini", T0 + DAY, 800, 3_000_000),
        TrainingItem("d1-late", "org-1", "mini", T0 + 13 * 3600, 800, 3_000_000),  # 23:00 the same day
    ]
    rated = rate_training(specs, lambda tier, day: 1_000)
    assert [rated[k].free_tokens for k in ("d1", "d1-other-tier", "d1-other-org", "d2", "d1-late")] == [
        800,
        800,
        800,
        800,
        200,
    ]


def test_rating_does_not_depend_on_write_order() -> None:
    specs = items(*[(f"k{i}", T0 + (i % 7) * 10, 100 + i) for i in range(40)])
    first = rate_training(specs, lambda tier, day: 2_500)
    shuffled = list(specs)
    random.Random(3).shuffle(shuffled)
    assert rate_training(shuffled, lambda tier, day: 2_500) == first
    assert sum(r.free_tokens for r in first.values()) == 2_500


def test_allowance_policy_until_and_tier_override(tmp_path: Path) -> None:
    extra = tmp_path / "prices.toml"
    extra.write_text(
        "[tiers.mini]\ntraining_per_1m = 3_000_000\ninput_per_1m = 300_000\noutput_per_1m = 1_200_000\n"
        "free_training_tokens_per_day = 2_000_000\n"
    )
    policy = AllowancePolicy(1_000_000, date(2024, 10, 31), PriceBook.load(extra))
    assert policy("mini", date(2024, 10, 31)) == 2_000_000
    assert policy("flagship", date(2024, 10, 31)) == 1_000_000
    assert policy("mini", date(2024, 11, 1)) == 0
    assert AllowancePolicy(5, None)("any", date(2099, 1, 1)) == 5


def test_bundled_price_book_has_the_two_tiers() -> None:
    book = PriceBook.load()
    flagship, mini = book.tiers["flagship"], book.tiers["mini"]
    assert (flagship.training_per_1m, flagship.input_per_1m, flagship.output_per_1m) == (
        25_000_000,
        3_750_000,
        15_000_000,
    )
    assert (mini.training_per_1m, mini.input_per_1m, mini.output_per_1m) == (3_000_000, 300_000, 1_200_000)
    assert book.price("smollm2-135m-instruct", "mini") == mini
    with pytest.raises(PriceNotFound) as err:
        book.price("mystery", "no-such-tier")
    assert err.value.code == "price_not_found"


def test_operator_file_overrides_a_model_and_adds_a_tier(tmp_path: Path) -> None:
    extra = tmp_path / "prices.toml"
    extra.write_text(
        '[models."tiny-llama"]\ntraining_per_1m = 1\ninput_per_1m = 2\noutput_per_1m = 3\n'
        "[tiers.huge]\ntraining_per_1m = 100_000_000\ninput_per_1m = 10_000_000\noutput_per_1m = 30_000_000\n"
    )
    book = PriceBook.load(extra)
    assert book.price("tiny-llama", "mini").output_per_1m == 3
    assert book.price("other", "mini").output_per_1m == 1_200_000
    assert book.price("other", "huge").training_per_1m == 100_000_000


@pytest.mark.parametrize(
    "text",
    [
        "[tiers.x]\ntraining_per_1m = 1.5\ninput_per_1m = 1\noutput_per_1m = 1\n",
        "[tiers.x]\ntraining_per_1m = -1\ninput_per_1m = 1\noutput_per_1m = 1\n",
        "[tiers.x]\ntraining_per_1m = 1\ninput_per_1m = 1\n",
        "[tiers.x]\ntraining_per_1m = 1\ninput_per_1m = 1\noutput_per_1m = 1\ncolour = 1\n",
    ],
)
def test_bad_price_book_is_refused(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"tiers\.x"):
        PriceBook.load(bad)


def test_estimate_subtracts_the_allowance_left() -> None:
    assert training_estimate(10_000, 3_000_000, 4_000) == 18_000
    assert training_estimate(10_000, 3_000_000, 20_000) == 0


def test_money_edges() -> None:
    assert (
        format_usd(1_234_567) == "$1.234567"
        and format_usd(5) == "$0.000005"
        and format_usd(-10) == "-$0.000010"
    )
    assert cents_to_micros(150) == 1_500_000 and micros_to_dollars(2_500_000) == 2.5


def test_months_and_days_are_utc() -> None:
    assert utc_day(T0) == date(2026, 11, 25)
    assert utc_day(month_start(T0)) == date(2026, 11, 1) and utc_day(next_month_start(T0)) == date(
        2026, 12, 1
    )
    assert utc_day(next_month_start(T0 + 40 * DAY)) == date(2027, 2, 1)  # over the year end


def test_buckets_align_to_utc_and_page() -> None:
    start = T0 - 3_600  # 09:00
    g = grid(start, start + 5 * DAY, "1d", 2, None)
    assert [w.start for w in g.windows] == [T0 - 10 * 3600, T0 - 10 * 3600 + DAY]
    assert g.has_more and g.next_page
    g2 = grid(start, start + 5 * DAY, "1d", 10, g.next_page)
    assert g2.windows[0].start == g.windows[-1].end and len(g2.windows) == 4 and not g2.has_more
    with pytest.raises(InvalidRequest):
        grid(start, start + DAY, "1d", 2, "page_garbage")
    with pytest.raises(InvalidRequest):
        grid(start, start, "1d", 2, None)
    facts = [(start - 1, 5), (start, 1), (start + 60, 2), (start + DAY, 4)]
    buckets = aggregate(
        facts,
        g.windows,
        start_time=start,
        end_time=start + 5 * DAY,
        at=lambda f: f[0],
        key=lambda f: (),
        values=lambda f: {"n": f[1]},
    )
    assert [[grp.sums["n"] for grp in b.groups] for b in buckets] == [[3], [4]]  # before start_time: left out
