"""Pure parts of serving: incremental text with stop strings, token bytes, tool-call assembly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afinar.inference.assemble import ChoiceAssembler, ToolMode, merge
from afinar.inference.text import TextStream, TokenTexts


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def feed(stream: TextStream, tok: Any, text: str) -> list[str]:
    out = []
    for token_id in tok(text, add_special_tokens=False)["input_ids"]:
        out.append(stream.push(token_id))
        if stream.stopped:
            break
    return out


def test_text_stream_without_stops_is_the_decoded_text(tok: Any) -> None:
    stream = TextStream(tok)
    pieces = feed(stream, tok, "Hard wheels around 99A are best for street.")
    assert "".join(pieces) + stream.flush() == "Hard wheels around 99A are best for street."


def test_stop_string_cut_and_held_back(tok: Any) -> None:
    stream = TextStream(tok, stop=("are best",))
    pieces = feed(stream, tok, "Hard wheels around 99A are best for street.")
    assert stream.stopped
    assert "".join(pieces) == "Hard wheels around 99A "
    assert all("are" not in p for p in pieces)  # never sent, even partially


def test_prefix_is_reported_but_not_searched(tok: Any) -> None:
    stream = TextStream(tok, stop=("{",), prefix="{")
    pieces = feed(stream, tok, '"a": 1}')
    assert "".join(pieces) + stream.flush() == '{"a": 1}'


def test_token_bytes_for_byte_level_vocab(tok: Any) -> None:
    texts = TokenTexts(tok)
    token_id = tok(" street", add_special_tokens=False)["input_ids"][0]
    text, raw = texts.get(token_id)
    assert bytes(raw).decode() == text and text.startswith(" ")


def _assemble(pieces: list[str], mode: ToolMode, reason: str = "stop") -> dict[str, Any]:
    assembler = ChoiceAssembler(0, mode, logprobs=False)
    deltas = [d for p in pieces for d in assembler.feed(p)] + assembler.finish(reason)
    return merge(deltas, want_logprobs=False)


def test_tool_calls_parsed_in_one_piece_or_many() -> None:
    text = 'Let me check.<tool_call>\n{"name": "get_order", "arguments": {"id": 42}}\n</tool_call>'
    whole = _assemble([text], ToolMode(parse=True))
    pieces = _assemble([text[i : i + 3] for i in range(0, len(text), 3)], ToolMode(parse=True))
    for result in (whole, pieces):
        assert result["finish_reason"] == "tool_calls"
        assert result["content"] == "Let me check."
        (call,) = result["tool_calls"]
        assert call["function"] == {"name": "get_order", "arguments": json.dumps({"id": 42})}
        assert call["id"].startswith("call_") and call["type"] == "function"


def test_unparseable_tool_call_stays_content() -> None:
    result = _assemble(["<tool_call>not json</tool_call>"], ToolMode(parse=True))
    assert result["content"] == "<tool_call>not json</tool_call>"
    assert result["tool_calls"] is None and result["finish_reason"] == "stop"


def test_legacy_function_call() -> None:
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    result = _assemble([text], ToolMode(parse=True, legacy_functions=True))
    assert result["finish_reason"] == "function_call"
    assert result["function_call"] == {"name": "f", "arguments": "{}"}
    assert result["content"] is None


def _sampler(tok: Any, **params: Any) -> Any:
    from afinar.inference.sampling import Sampler, make_generator
    from afinar.inference.types import SamplingParams

    return Sampler(SamplingParams(**params), make_generator(0), TokenTexts(tok))


def test_frequency_and_presence_penalties_follow_openai(tok: Any) -> None:
    import torch

    logits = torch.tensor([0.0, 0.5, 1.0])
    sampler = _sampler(tok, temperature=0.0, frequency_penalty=0.3, presence_penalty=0.4)
    assert sampler.choose(logits)[0] == 2  # 1.0
    assert sampler.choose(logits)[0] == 1  # 1.0 - 0.3 - 0.4 = 0.3 < 0.5
    assert sampler.choose(logits)[0] == 2  # 1.0 - 0.7 = 0.3 > 0.0 > 0.5 - 0.7
    bias = _sampler(tok, temperature=0.0, logit_bias={0: 5.0})
    assert bias.choose(logits)[0] == 0


def test_top_p_keeps_the_nucleus(tok: Any) -> None:
    import torch

    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    sampler = _sampler(tok, temperature=1.0, top_p=0.5)
    assert {sampler.choose(logits)[0] for _ in range(50)} == {0}
    wide = _sampler(tok, temperature=1.0, top_p=0.85)
    assert {wide.choose(logits)[0] for _ in range(200)} == {0, 1}
