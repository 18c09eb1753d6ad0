"""Limits that stop abuse: requests per minute per key, jobs at once per organisation, file names,
base models from the catalogue only, weights from safetensors only."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.queue.leases import claim
from afinar.services.filenames import clean_filename
from tests.support.data import chat_file
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY

SRC = Path(__file__).resolve().parents[2] / "src" / "afinar"


def test_rate_limit_per_key_answers_429_with_retry_after(
    container: Any, admin: openai.OpenAI, bot: openai.OpenAI
) -> None:
    container.settings.rate_limit_per_minute = 3
    for _ in range(3):
        bot.files.list()
    with pytest.raises(openai.RateLimitError) as err:
        bot.files.list()
    assert err.value.code == "rate_limit_exceeded"
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 60
    admin.files.list()  # another key has its own budget


def test_concurrent_jobs_per_org_wait_in_the_queue(
    container: Any, admin: openai.OpenAI, http: Any, tmp_path: Path
) -> None:
    from afinar.services.orgs import create_org

    fid = admin.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    a1, a2 = (admin.fine_tuning.jobs.create(model=TINY, training_file=fid).id for _ in range(2))
    _, key = create_org(container.db, "other")
    other = sdk(http, key)
    ofid = other.files.create(file=chat_file(tmp_path / "o.jsonl", 3).open("rb"), purpose="fine-tune").id
    b1 = other.fine_tuning.jobs.create(model=TINY, training_file=ofid).id

    queue = container.db
    first = claim(queue, "w1", 30, max_per_org=1)
    assert first is not None and first.job_id == a1
    second = claim(queue, "w2", 30, max_per_org=1)  # a2 waits: its organisation is at its limit
    assert second is not None and second.job_id == b1
    assert claim(queue, "w3", 30, max_per_org=1) is None
    assert admin.fine_tuning.jobs.retrieve(a2).status == "validating_files"  # still waiting, not failed
    admin.fine_tuning.jobs.cancel(a1)  # the slot frees
    third = claim(queue, "w3", 30, max_per_org=1)
    assert third is not None and third.job_id == a2
    assert claim(queue, "w4", 30, max_per_org=0) is None  # nothing left either way


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("train.jsonl", "train.jsonl"),
        ("../../etc/passwd.jsonl", "passwd.jsonl"),
        ("..\\..\\windows\\win.jsonl", "win.jsonl"),
        ("/abs/path/data set.jsonl", "data set.jsonl"),
        ("evil\x00name\r\n.jsonl", "evilname.jsonl"),
        ("inv\u202eoice\u200b.jsonl", "invoice.jsonl"),
        ("..", "upload"),
        ("%2e%2e%2fdata.jsonl", "%2e%2e%2fdata.jsonl"),  # not decoded: it is only a name
        ("Ünïcödé   spaced.jsonl", "Ünïcödé spaced.jsonl"),
        ("x" * 10_000 + ".jsonl", "x" * 249 + ".jsonl"),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_uploaded_names_are_sanitised(admin: openai.OpenAI, tmp_path: Path) -> None:
    data = chat_file(tmp_path / "t.jsonl", 3).read_bytes()
    made = admin.files.create(file=("../../x/\u202eevil.jsonl", data), purpose="fine-tune")
    assert made.filename == "evil.jsonl"
    assert admin.files.retrieve(made.id).filename == "evil.jsonl"


@pytest.mark.parametrize(
    "model",
    [
        "/etc/passwd",
        "../models/tiny-llama",
        "https://example.com/model.safetensors",
        "file:///tmp/m",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ],
)
def test_base_models_come_from_the_catalogue_only(admin: openai.OpenAI, tmp_path: Path, model: str) -> None:
    fid = admin.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as err:
        admin.fine_tuning.jobs.create(model=model, training_file=fid)
    assert err.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        admin.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)


def _keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_weights_load_from_safetensors_only() -> None:
    """No pickle imports; torch.load only with weights_only=True; never trust_remote_code=True; every
    transformers model load asks for safetensors (the bundled GGUF conversion excepted)."""
    problems = []
    for path in SRC.rglob("*.py"):
        code = path.read_text()
        rel = path.relative_to(SRC)
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) else []
                )
                if {"pickle", "dill", "joblib", "cloudpickle"} & {str(n).split(".")[0] for n in names}:
                    problems.append(f"{rel}:{node.lineno}: pickle import")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if _keyword(node, "trust_remote_code") is True:
                problems.append(f"{rel}:{node.lineno}: trust_remote_code=True")
            if owner == "torch" and node.func.attr == "load" and _keyword(node, "weights_only") is not True:
                problems.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
            if owner.startswith("AutoModel") and node.func.attr == "from_pretrained":
                spread = any(kw.arg is None for kw in node.keywords) and '"use_safetensors": True' in code
                gguf = any(kw.arg == "gguf_file" for kw in node.keywords)  # GGUF: no pickle
                if _keyword(node, "use_safetensors") is not True and not spread and not gguf:
                    problems.append(f"{rel}:{node.lineno}: from_pretrained without use_safetensors=True")
    assert problems == []


def test_racing_workers_never_exceed_the_limit(db: Any) -> None:  # SQLite and PostgreSQL
    """Eight workers claim at once from one organisation's six jobs with a limit of two."""
    import threading

    from afinar.services.orgs import create_org
    from tests.support.queue import add_job

    org = create_org(db, "acme")[0].id
    for _ in range(6):
        add_job(db, org)
    barrier = threading.Barrier(8)
    got: list[object] = []

    def work(i: int) -> None:
        barrier.wait()
        got.append(claim(db, f"w{i}", 30, max_per_org=2))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([g for g in got if g is not None]) == 2
