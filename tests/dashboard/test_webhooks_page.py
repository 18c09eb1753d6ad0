"""The dashboard's webhooks page: the project's endpoints and each delivery with its attempts."""

from __future__ import annotations

from typing import Any

import openai

from tests.support.dashboard import sign_in
from tests.support.webhook_receiver import receiving


def test_webhooks_page_lists_endpoints_and_attempts(http: Any, client: openai.OpenAI) -> None:
    assert sign_in(http).status_code == 303
    assert "No webhook endpoints" in http.get("/webhooks").text
    with receiving(client, fail_first=1) as rx:
        ep = client.webhooks.create(name="ops hooks", url=rx.url, event_types=["fine_tuning.job.failed"])
        rx.secret = ep.signing_secret
        client.webhooks.test(ep.id, event_type="fine_tuning.job.failed")
        client.webhooks.test(ep.id, event_type="fine_tuning.job.failed")
    html = http.get("/webhooks").text
    assert "ops hooks" in html and rx.url in html and ep.signing_secret_hint in html
    assert ep.signing_secret not in html
    assert "HTTP 500" in html and "HTTP 200" in html and 'href="/webhooks"' in html
