"""The Ollama Modelfile of a GGUF export, from the tokenizer's own chat template and end of turn."""

from __future__ import annotations

import json
from pathlib import Path

from afinar.services import modelfile
from tests.support.tiny_model import CHATML_TEMPLATE, QWEN25_TEMPLATE

LLAMA3_TEMPLATE = (
    "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
)


def _tokenizer(directory: Path, template: str, eos: object) -> Path:
    directory.mkdir()
    config = {"chat_template": template, "eos_token": eos}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_chatml_becomes_a_go_template_with_its_default_system_and_stop(tmp_path: Path) -> None:
    text = modelfile.render(_tokenizer(tmp_path / "t", CHATML_TEMPLATE, "<|im_end|>"), "model.gguf")
    assert "\nFROM ./model.gguf\n" in text
    assert 'SYSTEM """You are a helpful assistant."""' in text
    assert f'TEMPLATE """{modelfile.CHATML_GO_TEMPLATE}"""' in text
    assert text.count("PARAMETER stop") == 1 and 'PARAMETER stop "<|im_end|>"' in text


def test_qwen_default_system_is_its_literal_text_and_both_stops_are_kept(tmp_path: Path) -> None:
    directory = _tokenizer(tmp_path / "q", QWEN25_TEMPLATE, {"content": "<|endoftext|>"})
    text = modelfile.render(directory, "model.gguf", adapter_name="adapter.gguf")
    assert 'SYSTEM """You are Qwen, created by Alibaba Cloud. You are a helpful assistant."""' in text
    assert 'PARAMETER stop "<|endoftext|>"\nPARAMETER stop "<|im_end|>"' in text
    assert "ADAPTER ./adapter.gguf" in text


def test_a_template_that_is_not_chatml_is_quoted_with_its_stop_token(tmp_path: Path) -> None:
    text = modelfile.render(_tokenizer(tmp_path / "l", LLAMA3_TEMPLATE, "<|eot_id|>"), "model.gguf")
    assert "TEMPLATE" not in text.replace("# a TEMPLATE", "") and "SYSTEM" not in text
    assert "not ChatML" in text and "#   {% for message in messages %}" in text
    assert text.rstrip().endswith('PARAMETER stop "<|eot_id|>"')


def test_chat_template_jinja_file_wins(tmp_path: Path) -> None:
    directory = _tokenizer(tmp_path / "j", LLAMA3_TEMPLATE, "<|im_end|>")
    (directory / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    assert modelfile.chat_template(directory) == CHATML_TEMPLATE
    assert modelfile.is_chatml(modelfile.chat_template(directory))
