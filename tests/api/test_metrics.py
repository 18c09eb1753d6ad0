"""GET /metrics: Prometheus text with requests, tokens, latency, queue depth and adapters per model."""

from __future__ import annotations

import contextlib

import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.support.tiny_model import TINY


def samples(http) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_and_tokens_by_model(client: openai.OpenAI, http) -> None:  # type: ignore[no-untyped-def]
    answers = [
        client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        for _ in range(2)
    ]
    stream = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = next(c.usage for c in stream if c.usage)
    m = samples(http)
    assert m[("afinar_chat_requests_total", (("model", TINY), ("outcome", "ok")))] == 3
    prompt = sum(a.usage.prompt_tokens for a in answers if a.usage) + usage.prompt_tokens
    completion = sum(a.usage.completion_tokens for a in answers if a.usage) + usage.completion_tokens
    assert m[("afinar_chat_prompt_tokens_total", (("model", TINY),))] == prompt
    assert m[("afinar_chat_completion_tokens_total", (("model", TINY),))] == completion
    assert m[("afinar_chat_request_seconds_count", (("model", TINY),))] == 3
    assert ("afinar_inference_queue_depth", ()) in m


def test_errors_are_counted_and_token_protects_it(client: openai.OpenAI, http, container) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert samples(http)[("afinar_chat_requests_total", (("model", "other"), ("outcome", "error")))] == 1
    container.settings.metrics_token = "scrape-me"
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"authorization": "Bearer scrape-me"}).status_code == 200
