"""Chat completions are metered once each and stopped by the spend limit (the tiny model, in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from afinar.services.orgs import Principal
from afinar.store import usage as repo
from tests.support.billing import roomy_settings  # noqa: F401  (fixture: settings)
from tests.support.tiny_model import TINY

HELLO = [{"role": "user", "content": "Which wheels should I buy?"}]
NO_EOS = {"logit_bias": {"2": -100}}  # <|im_end|> in the tiny tokenizer: replies run to max_tokens


async def _one(client: openai.AsyncOpenAI, i: int) -> tuple[str, int, int]:
    max_tokens = 1 + i % 5
    if i % 4 == 0:  # streamed, with the usage chunk
        stream = await client.chat.completions.create(
            model=TINY,
            messages=HELLO,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **NO_EOS,  # type: ignore[arg-type]
        )
        usage = None
        cid = ""
        async for chunk in stream:
            cid = chunk.id
            usage = chunk.usage or usage
        assert usage is not None
        return cid, usage.prompt_tokens, usage.completion_tokens
    r = await client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": f"Question {i}: how often should I clean my bearings?"}],
        max_tokens=max_tokens,
        n=1 + i % 2,
        **NO_EOS,  # type: ignore[arg-type]
    )
    assert r.usage is not None
    return r.id, r.usage.prompt_tokens, r.usage.completion_tokens


def test_100_concurrent_chat_requests_leave_a_ledger_equal_to_their_usage(
    app: Any, settings: Any, container: Any, principal: Principal, admin: openai.OpenAI
) -> None:
    async def main() -> list[tuple[str, int, int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=300) as http:
            client = openai.AsyncOpenAI(
                base_url="http://testserver/v1",
                api_key=settings.bootstrap_api_key,
                http_client=http,
                max_retries=0,
            )
            return await asyncio.gather(*(_one(client, i) for i in range(100)))

    answers = asyncio.run(main())
    with container.db.session() as s:
        ledger = repo.between(s, principal.org_id, 0, 2**62, kind="inference")
    assert len({a[0] for a in answers}) == 100
    assert sorted(r.key for r in ledger) == sorted(f"inference:{a[0]}" for a in answers)
    assert sum(r.input_tokens for r in ledger) == sum(a[1] for a in answers)
    assert sum(r.output_tokens for r in ledger) == sum(a[2] for a in answers)
    assert {(r.project_id, r.api_key_id, r.model) for r in ledger} == {
        (principal.project_id, principal.key_id, TINY)
    }
    day = admin.admin.organization.usage.completions(start_time=min(r.occurred_at for r in ledger))
    assert sum(res.input_tokens for b in day.data for res in b.results) == sum(a[1] for a in answers)
    assert sum(res.num_model_requests for b in day.data for res in b.results) == 100


def test_the_spend_limit_stops_chat_with_insufficient_quota(
    client: openai.OpenAI, admin: openai.OpenAI, principal: Principal
) -> None:
    client.chat.completions.create(model=TINY, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=TINY, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert err.value.code == "insufficient_quota"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=TINY, messages=HELLO, max_tokens=2, stream=True)  # type: ignore[arg-type]
    admin.admin.organization.spend_limit.delete()
    client.chat.completions.create(model=TINY, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
