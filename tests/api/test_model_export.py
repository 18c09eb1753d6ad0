"""``GET /v1/afinar/models/{model}/export``: a tuned tiny model as its PEFT adapter, a merged
safetensors folder, or a GGUF (merged, plus the adapter as a GGUF LoRA) with an Ollama Modelfile.

The merged model must answer exactly as base + adapter does; the GGUFs must load in llama.cpp's
server and the merged one must answer as the merged safetensors do."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

PROMPT = "Which wheels should I buy for street skating?"


def _tuned(client: openai.OpenAI, container: Any, tmp_path: Path) -> str:
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=fid, hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 10}
    )
    run_worker(container)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    return str(done.fine_tuned_model)


def _export(http: Any, name: str, fmt: str | None, key: str = "sk-test-key") -> Any:
    params = {"format": fmt} if fmt is not None else {}
    return http.get(
        f"/v1/afinar/models/{name}/export", params=params, headers={"authorization": f"Bearer {key}"}
    )


def _unzip(content: bytes, directory: Path) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(directory)
        return set(zf.namelist())


def _greedy_ids(model: Any, tokenizer: Any, n: int = 8) -> tuple[list[int], list[int]]:
    import torch

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    prompt = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return prompt, [int(t) for t in out[0][len(prompt) :]]


@pytest.fixture
def tuned(client: openai.OpenAI, container: Any, tmp_path: Path) -> str:
    return _tuned(client, container, tmp_path)


def test_peft_and_merged_exports_answer_as_base_plus_adapter(
    http: Any, tuned: str, container: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    peft = _export(http, tuned, "peft")
    assert peft.status_code == 200 and peft.headers["content-type"] == "application/zip"
    names = _unzip(peft.content, tmp_path / "peft")
    assert {"adapter_config.json", "adapter_model.safetensors", "model_card.json"} <= names
    assert json.loads((tmp_path / "peft" / "model_card.json").read_text())["base_model"] == TINY

    merged = _export(http, tuned, "merged")
    assert merged.status_code == 200
    assert tuned.replace(":", "_") + "-merged.zip" in merged.headers["content-disposition"]
    names = _unzip(merged.content, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "model_card.json"} <= names
    assert not any(n.startswith("adapter_") for n in names)
    card = json.loads((tmp_path / "merged" / "model_card.json").read_text())
    assert card["object"] == "afinar.model_card" and card["base_model"] == TINY
    assert list(container.settings.scratch_dir.iterdir()) == []  # no plaintext left behind

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    standalone = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    assert standalone.dtype == torch.float32  # the tiny base's own dtype
    prompt, expected = _greedy_ids(with_adapter, tokenizer)
    assert _greedy_ids(standalone, tokenizer) == (prompt, expected)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    assert _greedy_ids(plain, tokenizer)[1] != expected  # the adapter changed the answer: a real merge

    entries = _audit(container, tuned)
    assert [e.details["format"] for e in entries] == ["merged", "peft"]  # newest first
    assert all(e.actor_key_id for e in entries)


def _audit(container: Any, name: str) -> list[Any]:
    from afinar.services import audit
    from afinar.services.orgs import authenticate
    from afinar.store.audit import AuditQuery

    org = authenticate(container.db, "sk-test-key").org_id  # the organisation that trained
    page, _ = audit.entries(container.db, org, AuditQuery(types=[audit.MODEL_EXPORTED], resource_ids=[name]))
    return list(page.items)


def test_gguf_export_loads_in_llama_cpp_and_answers_as_the_merged_model(
    http: Any, tuned: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("xllamacpp")
    import httpx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.support.llama_server import llama_server

    names = _unzip(_export(http, tuned, "gguf").content, tmp_path / "gguf")
    assert names == {"model.gguf", "adapter.gguf", "Modelfile", "model_card.json"}
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text()
    assert "\nFROM ./model.gguf\n" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are a helpful assistant."""' in modelfile
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n" in modelfile
    assert modelfile.rstrip().endswith('PARAMETER stop "<|im_end|>"')

    merged = _unzip(_export(http, tuned, "merged").content, tmp_path / "merged")
    assert "model.safetensors" in merged
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    prompt, expected = _greedy_ids(AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")), tokenizer)
    with llama_server(tmp_path / "gguf" / "model.gguf", threads=2) as url:
        body = {"prompt": prompt, "n_predict": len(expected), "temperature": 0, "return_tokens": True}
        answer = httpx.post(url + "/completion", json=body, timeout=120).json()
    assert answer["tokens"] == expected

    # The GGUF LoRA on the base's own GGUF is the same model, up to f16 rounding of the delta.
    from afinar.inference.gguf import base_gguf

    base = base_gguf(tiny_model_dir, tmp_path / "base")
    with llama_server(base, threads=2, loras=(tmp_path / "gguf" / "adapter.gguf",)) as url:
        answer = httpx.post(url + "/completion", json=body, timeout=120).json()
    assert answer["tokens"] == expected


def test_export_is_owner_scoped_and_checks_its_format(http: Any, tuned: str, container: Any) -> None:
    from afinar.services.orgs import create_org

    _, intruder = create_org(container.db, "intruder")
    for fmt in ("peft", "merged", "gguf", "nonsense", None):
        denied = _export(http, tuned, fmt, key=intruder)
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
    bad = _export(http, tuned, "onnx")
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "format"
    assert "gguf, merged, peft" in error["message"]
    assert _export(http, tuned, None).json()["error"]["param"] == "format"
    base = _export(http, TINY, "gguf")
    assert base.status_code == 400 and "base model" in base.json()["error"]["message"]
    assert _audit(container, tuned) == []  # nothing was exported
