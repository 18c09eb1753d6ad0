"""HFEngine on the tiny random Llama: sampling, stops, lengths, logprobs, adapters, batching."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from afinar.errors import InvalidRequest, RateLimited
from tests.support.adapters import request

LONG = {"max_tokens": 12}


@pytest.fixture(scope="module")
def eos(tiny_model_dir: Path) -> int:
    from transformers import AutoTokenizer

    return int(AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids("<|im_end|>"))


def no_eos(eos: int) -> dict[str, Any]:
    return {"logit_bias": {eos: -100.0}}


def test_greedy_is_deterministic_and_max_tokens_gives_length(
    engine: Any, tiny_model_dir: Path, eos: int
) -> None:
    a = engine.generate_sync(
        request(tiny_model_dir, temperature=0.0, max_tokens=7, **no_eos(eos)), timeout=60
    )
    b = engine.generate_sync(
        request(tiny_model_dir, temperature=0.0, max_tokens=7, **no_eos(eos)), timeout=60
    )
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].finish_reason == "length"
    assert a.choices[0].completion_tokens == 7 == a.completion_tokens
    assert a.prompt_tokens > 10


def test_prompt_tokens_are_the_rendered_prompt(engine: Any, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from afinar.datasets.encoding import render_prompt
    from tests.support.adapters import QUESTION

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = len(tok(render_prompt(tok, QUESTION), add_special_tokens=False)["input_ids"])
    result = engine.generate_sync(request(tiny_model_dir, max_tokens=1), timeout=60)
    assert result.prompt_tokens == expected


def test_seed_gives_the_same_sample(engine: Any, tiny_model_dir: Path) -> None:
    def sample(seed: int) -> list[str]:
        result = engine.generate_sync(
            request(tiny_model_dir, temperature=1.0, seed=seed, n=2, **LONG), timeout=60
        )
        return [c.text for c in result.choices]

    first, again, other = sample(7), sample(7), sample(8)
    assert first == again
    assert first != other
    assert first[0] != first[1]  # the n choices are different samples


def test_n_choices_and_summed_usage(engine: Any, tiny_model_dir: Path, eos: int) -> None:
    result = engine.generate_sync(
        request(tiny_model_dir, temperature=0.8, seed=1, n=3, max_tokens=5, **no_eos(eos)), timeout=60
    )
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and c.completion_tokens == 5 for c in result.choices)
    assert result.completion_tokens == 15


def test_eos_finishes_with_stop(engine: Any, tiny_model_dir: Path, eos: int) -> None:
    result = engine.generate_sync(request(tiny_model_dir, max_tokens=20, logit_bias={eos: 100.0}), timeout=60)
    choice = result.choices[0]
    assert (choice.text, choice.finish_reason, choice.completion_tokens) == ("", "stop", 1)


def test_stop_string_truncates_before_it(engine: Any, tiny_model_dir: Path, eos: int) -> None:
    params = {"temperature": 1.0, "seed": 3, "max_tokens": 40, **no_eos(eos)}
    full = engine.generate_sync(request(tiny_model_dir, **params), timeout=60).choices[0].text
    starts = [i for i in range(3, len(full) - 2) if "\ufffd" not in full[i : i + 2]]
    assert starts, f"sample too short: {full!r}"
    stop = full[starts[0] : starts[0] + 2]
    result = engine.generate_sync(request(tiny_model_dir, stop=("@@never@@", stop), **params), timeout=60)
    assert result.choices[0].text == full[: full.find(stop)]
    assert result.choices[0].finish_reason == "stop"


def test_logprobs_shape(engine: Any, tiny_model_dir: Path, eos: int) -> None:
    result = engine.generate_sync(
        request(tiny_model_dir, temperature=0.0, max_tokens=4, logprobs=True, top_logprobs=3, **no_eos(eos)),
        timeout=60,
    )
    content = [lp.to_dict() for lp in result.choices[0].logprobs]
    assert len(content) == 4
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert isinstance(entry["token"], str) and entry["logprob"] <= 0.0
        assert all(isinstance(b, int) and 0 <= b < 256 for b in entry["bytes"])
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and set(tops[0]) == {"token", "logprob", "bytes"}
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert tops[0]["token"] == entry["token"]  # greedy picks the top token


def test_context_length_is_enforced(engine: Any, tiny_model_dir: Path) -> None:
    long = [{"role": "user", "content": "skate " * 400}]
    with pytest.raises(InvalidRequest) as err:
        engine.generate_sync(request(tiny_model_dir, messages=long), timeout=60)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        engine.generate_sync(request(tiny_model_dir, max_tokens=10_000), timeout=60)


def test_adapters_change_output_and_use_their_tokenizer(
    engine: Any, tiny_model_dir: Path, adapters: list[Path], eos: int
) -> None:
    params = {"temperature": 0.0, "max_tokens": 8, **no_eos(eos)}
    base = engine.generate_sync(request(tiny_model_dir, **params), timeout=60)
    tuned = engine.generate_sync(request(tiny_model_dir, adapters[0], **params), timeout=60)
    assert tuned.choices[0].text != base.choices[0].text
    assert tuned.prompt_tokens == base.prompt_tokens
    own = engine.generate_sync(request(tiny_model_dir, adapters[3], **params), timeout=60)
    assert own.prompt_tokens > base.prompt_tokens  # its template's longer system prompt was used
    again = engine.generate_sync(request(tiny_model_dir, **params), timeout=60)
    assert again.choices[0].text == base.choices[0].text  # the base is untouched by loaded adapters


def test_adapter_lru_evicts_and_unload_forgets(tiny_model_dir: Path, adapters: list[Path], eos: int) -> None:
    from afinar.inference.engine import HFEngine

    engine = HFEngine(adapter_cache_size=2)
    params = {"temperature": 0.0, "max_tokens": 6, **no_eos(eos)}
    try:
        first = [engine.generate_sync(request(tiny_model_dir, a, **params), timeout=60) for a in adapters[:3]]
        assert engine.loaded_adapters() == adapters[1:3]  # a0 evicted (least recently used)
        peft_model = engine.store.base(tiny_model_dir).peft
        assert len(peft_model.peft_config) == 2
        reloaded = engine.generate_sync(request(tiny_model_dir, adapters[0], **params), timeout=60)
        assert reloaded.choices[0].text == first[0].choices[0].text
        assert engine.loaded_adapters() == [adapters[2], adapters[0]]
        assert engine.unload(adapters[0]) is True
        assert engine.loaded_adapters() == [adapters[2]]
        assert len(peft_model.peft_config) == 1
        assert engine.unload(adapters[0]) is False
    finally:
        engine.close()


@pytest.mark.parametrize("lora_path", ["batched", "peft-mixed"])
def test_concurrent_requests_batch_across_adapters_with_solo_results(
    tiny_model_dir: Path, adapters: list[Path], eos: int, lora_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.inference.engine import HFEngine
    from afinar.inference.multilora import MixedLoRA

    if lora_path == "peft-mixed":  # what adapters MixedLoRA cannot take (DoRA, LoRA bias) go through
        monkeypatch.setattr(MixedLoRA, "supports", lambda self, layers, rows: False)

    engine = HFEngine(adapter_cache_size=8, max_batch_size=8)
    questions = ["Which wheels?", "How often should I clean my bearings in the rain?"]
    cases = [(q, a) for q in questions for a in [None, *adapters[:3]]]

    def run(q: str, a: Path | None) -> str:
        msgs = [{"role": "user", "content": q}]
        result = engine.generate_sync(
            request(tiny_model_dir, a, messages=msgs, temperature=0.0, max_tokens=10, **no_eos(eos)),
            timeout=120,
        )
        return str(result.choices[0].text)

    try:
        solo = {c: run(*c) for c in cases}
        together: dict[tuple[str, Path | None], str] = {}
        threads = [threading.Thread(target=lambda c=c: together.__setitem__(c, run(*c))) for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert together == solo
        assert engine.stats["max_batch_rows"] > 1
        assert engine.stats["max_batch_adapters"] > 1
    finally:
        engine.close()


def test_full_queue_is_rate_limited(tiny_model_dir: Path) -> None:
    from afinar.inference.engine import HFEngine

    engine = HFEngine(max_queued_requests=1)
    try:
        # the worker cannot admit anything while we hold the store's lock
        with engine.store.lock, pytest.raises(RateLimited) as err:
            for _ in range(3):
                engine.submit(request(tiny_model_dir, max_tokens=1), lambda event: None)
        assert err.value.retry_after >= 1
    finally:
        engine.close()


async def _first_delta_then_close(engine: Any, tiny_model_dir: Path, eos: int) -> int:
    from afinar.inference.types import Delta

    stream = engine.stream(request(tiny_model_dir, temperature=1.0, seed=1, max_tokens=200, **no_eos(eos)))
    async for event in stream:
        if isinstance(event, Delta):
            break
    await stream.aclose()
    return 1


def test_closing_a_stream_cancels_generation(engine: Any, tiny_model_dir: Path, eos: int) -> None:
    import asyncio

    asyncio.run(_first_delta_then_close(engine, tiny_model_dir, eos))
    # the engine is free again and serves the next request
    result = engine.generate_sync(request(tiny_model_dir, max_tokens=2, **no_eos(eos)), timeout=60)
    assert result.choices[0].completion_tokens == 2
