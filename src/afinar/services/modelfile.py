"""An Ollama ``Modelfile`` for an exported GGUF: its chat template in Go-template form and its stop token.

Ollama does not run Hugging Face's Jinja chat templates; a Modelfile states the prompt format as a
Go template (``TEMPLATE``) and the end-of-turn token as ``PARAMETER stop``. Both come from the
tokenizer the model was trained with (``tokenizer_config.json``, or ``chat_template.jinja`` next
to it), never from a table of model names:

- a ChatML template (``<|im_start|>role\\n...<|im_end|>\\n``, SmolLM2's and Qwen's) becomes the
  equivalent Go template, with the template's default system prompt (the one it inserts when a
  conversation has none) as the Modelfile's ``SYSTEM``;
- any other template is written as a comment for the reader to port by hand, and ``TEMPLATE``
  is left to the GGUF (which carries the Jinja template itself); the stop token is written anyway.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# The default system turn a ChatML template writes before a conversation without one: literal
# text (no quote, ``+`` or brace, so never the template's ``messages[0]['content']`` branch); the
# newline is a real one or a Jinja string escape (``\n``).
_DEFAULT_SYSTEM = re.compile(re.escape(IM_START) + r"system(?:\\n|\n)([^'\"{}+]*?)" + re.escape(IM_END), re.S)

CHATML_GO_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    '{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
    "{{ end }}{{- end }}<|im_start|>assistant\n"
)


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def chat_template(model_dir: Path) -> str:
    """The tokenizer's chat template ('' when it has none)."""
    jinja = Path(model_dir) / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = _tokenizer_config(model_dir)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else ""


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "tokenizer_config.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def stop_tokens(model_dir: Path) -> list[str]:
    """The end-of-turn tokens: the tokenizer's EOS, and ChatML's ``<|im_end|>`` when the template uses it."""
    out: list[str] = []
    eos = _token_text(_tokenizer_config(model_dir).get("eos_token"))
    if eos:
        out.append(eos)
    if is_chatml(chat_template(model_dir)) and IM_END not in out:
        out.append(IM_END)
    return out


def is_chatml(template: str) -> bool:
    return IM_START in template and IM_END in template


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(model_dir: Path, gguf_name: str, *, adapter_name: str | None = None, title: str = "") -> str:
    """The Modelfile for the GGUF ``gguf_name`` (next to it), from the tokenizer in ``model_dir``."""
    template = chat_template(model_dir)
    lines = [f"# Ollama Modelfile for {title}" if title else "# Ollama Modelfile", ""]
    lines += [f"FROM ./{gguf_name}"]
    if adapter_name:
        lines += [
            "# The adapter alone, as a GGUF LoRA, is in the same archive: to run it on your own GGUF of",
            f"# the base model instead, use `FROM <base>.gguf` and `ADAPTER ./{adapter_name}`.",
        ]
    lines.append("")
    if is_chatml(template):
        if match := _DEFAULT_SYSTEM.search(template):
            system = match.group(1).replace("\\n", "\n")
            lines += [f'SYSTEM """{system}"""', ""]
        lines += [f'TEMPLATE """{CHATML_GO_TEMPLATE}"""', ""]
    else:
        lines += [
            "# This model's chat template is not ChatML, so it is not translated to Ollama's Go template",
            "# here: Ollama falls back to the Jinja template stored in the GGUF where it can, else write",
            "# a TEMPLATE by hand from this one (the tokenizer's chat template, as trained):",
            *[f"#   {line}" for line in (template or "(none)").splitlines()],
            "",
        ]
    lines += [f"PARAMETER stop {_quoted(token)}" for token in stop_tokens(model_dir)]
    return "\n".join(lines) + "\n"
