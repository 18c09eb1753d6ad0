"""Training labels end each trained assistant turn with the base model's own end-of-turn token.

A tuned model learns to stop only if the token its template closes a turn with is trained on;
serving then stops on it (tests/inference/test_vocab.py). Checked on a Qwen2.5-style tokenizer
(``<|im_end|>`` as EOS, a default system prompt, no BOS) and on one whose EOS is not the
end-of-turn token (as Llama 3 base tokenizers: ``<|end_of_text|>`` while turns end with
``<|eot_id|>``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afinar.datasets.encoding import IGNORE_INDEX, encode_chat
from afinar.datasets.validation import validate_lines
from tests.support.tiny_model import build_qwen25_tokenizer

# Mistral-7B-Instruct-v0.3's template, without its tools branch: no generation prompt (the reply
# follows ``[/INST]``), each reply closed by the EOS ``</s>``, and the system prompt moved into the
# *last* user turn, so a conversation with one does not render incrementally.
MISTRAL_V03_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)


@pytest.fixture(scope="module")
def qwen_tok(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_qwen25_tokenizer(tmp_path_factory.mktemp("qwen25-tok"))


def _trained_runs(tokenizer: Any, labels: list[int]) -> list[str]:
    """The decoded text of each run of consecutive trained tokens."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for label in labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return [tokenizer.decode(run) for run in runs]


CONVERSATION = {
    "messages": [
        {"role": "user", "content": "Which wheels for street?"},
        {"role": "assistant", "content": "Hard wheels."},
        {"role": "user", "content": "And bearings?"},
        {"role": "assistant", "content": "Clean them monthly."},
    ]
}


def test_each_trained_turn_ends_with_im_end(qwen_tok: Any) -> None:
    encoded = encode_chat(qwen_tok, CONVERSATION, max_length=512)
    assert _trained_runs(qwen_tok, encoded.labels) == [
        "Hard wheels.<|im_end|>",
        "Clean them monthly.<|im_end|>",
    ]
    # The template's default system prompt and the newline after <|im_end|> are context, not trained.
    text = qwen_tok.decode(encoded.input_ids)
    assert text.startswith("<|im_start|>system\nYou are Qwen") and text.endswith("<|im_end|>\n")


def test_end_of_turn_is_trained_when_eos_is_another_token(qwen_tok: Any, tmp_path: Path) -> None:
    qwen_tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(str(tmp_path), eos_token="<|endoftext|>")
    assert other.eos_token == "<|endoftext|>"
    encoded = encode_chat(other, CONVERSATION, max_length=512)
    assert _trained_runs(other, encoded.labels) == ["Hard wheels.<|im_end|>", "Clean them monthly.<|im_end|>"]


def test_untrained_turn_has_no_labels(qwen_tok: Any) -> None:
    example = {"messages": [dict(m) for m in CONVERSATION["messages"]]}
    example["messages"][1]["weight"] = 0
    encoded = encode_chat(qwen_tok, example, max_length=512)
    assert _trained_runs(qwen_tok, encoded.labels) == ["Clean them monthly.<|im_end|>"]


def test_mistral_style_trains_eos_and_refuses_system_prompts(qwen_tok: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    qwen_tok.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path), bos_token="<|im_start|>", eos_token="<|endoftext|>")
    tok.chat_template = MISTRAL_V03_TEMPLATE
    encoded = encode_chat(tok, CONVERSATION, max_length=512)
    assert _trained_runs(tok, encoded.labels) == [
        " Hard wheels.<|endoftext|>",
        " Clean them monthly.<|endoftext|>",
    ]
    with_system = {"messages": [{"role": "system", "content": "Be brief."}, *CONVERSATION["messages"]]}
    report = validate_lines([json.dumps(with_system).encode()] * 10, tokenizer=tok, context_length=512)
    assert {p.code for p in report.errors} == {"render_error"}
    assert "does not render conversations incrementally" in report.errors[0].message
