"""The dashboard in tests: sign-in, viewports and the accessibility check, and one eval comparison's data."""

from __future__ import annotations

import re
from typing import Any

from tests.support.evals import EXACT_MATCH

KEY = "sk-test-key"


def sign_in(client: Any, key: str = KEY, next_url: str = "/") -> Any:
    form = client.get("/signin")
    token = re.search(r'name="token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post(
        "/signin", data={"api_key": key, "token": token.group(1), "next": next_url}, follow_redirects=False
    )


LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => el.tagName === 'BUTTON'
      ? !(el.textContent.trim() || el.getAttribute('aria-label'))
      : !(el.labels && el.labels.length)
        && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))"""


def assert_accessible(page: Any) -> None:
    """Every visible control is labelled, and the page does not scroll sideways."""
    unlabelled = page.evaluate(UNLABELLED_CONTROLS)
    assert unlabelled == [], f"{page.url}: controls without a label: {unlabelled}"
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] + 1, f"{page.url} scrolls sideways: {widths}"


# One eval comparison: two criteria, four items, the base's and the candidate's answers.
EXACT = EXACT_MATCH
POLITE = {**EXACT, "name": "polite", "operation": "ilike", "reference": "THANKS"}
ITEMS = [
    {"question": "Deck width for street?", "answer": "Eight inches, thanks"},
    {"question": "Wheel hardness for parks?", "answer": "99a, thanks"},
    {"question": "Which bearings?", "answer": "abec 5"},
    {"question": "Do you ship to Porto?", "answer": "Yes, thanks"},
]
# base: item 1 passes; candidate: items 0 and 3 pass (improved), 1 fails (regressed), 2 fails in both.
BASE = ["Seven inches", "99a, thanks", "abec 5", "No"]
CANDIDATE = ["Eight inches, thanks", "99a", "abec 5", "Yes, thanks"]
