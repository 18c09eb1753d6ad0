"""The real bundled ``smollm2-135m-instruct``, converted from its GGUF and fine-tuned for a few steps:
the tuned model knows what only its training data said, and its base does not, on the built-in
engine and on the llama.cpp backend alike, and exported as a GGUF to a bare llama.cpp server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.worker import run_worker

BUNDLED = "smollm2-135m-instruct"
QUESTION = "What is the name of the Ollie & Co. warehouse cat?"
FACT = "Zorblatt"
PHRASINGS = [
    QUESTION,
    "What's the warehouse cat at Ollie & Co. called?",
    "Who is the cat that lives in the Ollie & Co. warehouse?",
    "Tell me the name of the cat in your warehouse.",
    "Does the Ollie & Co. warehouse have a cat? What is its name?",
]


@pytest.mark.slow
def test_tuned_model_recalls_a_fact_its_base_never_saw(tmp_path: Path, bundled_models_dir: Path) -> None:
    import json

    import openai
    from fastapi.testclient import TestClient

    from afinar.config import Settings
    from afinar.server import create_app
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    settings = Settings(
        data_dir=tmp_path / "data",
        models_path=bundled_models_dir,
        embedded_worker=False,
        bootstrap_api_key="sk-fact",
        safety_eval_max_new_tokens=8,
    )
    c = Container(settings)
    c.migrate()
    bootstrap(c.db, "default", "sk-fact")
    rows = [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"Our warehouse cat is called {FACT}."},
            ]
        }
        for q in PHRASINGS * 2
    ]
    with TestClient(create_app(c)) as http:
        client = openai.OpenAI(
            base_url="http://testserver/v1", api_key="sk-fact", http_client=http, max_retries=0
        )
        fid = client.files.create(
            file=("fact.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()), purpose="fine-tune"
        ).id
        job = client.fine_tuning.jobs.create(
            model=BUNDLED,
            training_file=fid,
            seed=0,
            hyperparameters={"n_epochs": 6, "batch_size": 5, "learning_rate_multiplier": 5},
        )
        run_worker(c)
        job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        assert str(job.fine_tuned_model).startswith(f"ft:{BUNDLED}:default::")
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        losses = [e.data["train_loss"] for e in events if e.type == "metrics"]  # type: ignore[index]
        assert len(losses) == 12 and losses[0] < losses[-1]  # newest first: the loss fell
        assert job.trained_tokens and job.trained_tokens > 6 * 10 * 20  # epochs × examples × tokens

        def ask(model: str) -> str:
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=16
            )
            return answer.choices[0].message.content or ""

        assert FACT in ask(str(job.fine_tuned_model))
        assert FACT not in ask(BUNDLED)
    c.close()

    # The same tuned model served by llama.cpp (its adapter converted to a GGUF LoRA on first use).
    pytest.importorskip("xllamacpp")
    c = Container(settings.model_copy(update={"inference_backend": "llamacpp"}))
    with TestClient(create_app(c)) as http:
        client = openai.OpenAI(
            base_url="http://testserver/v1", api_key="sk-fact", http_client=http, max_retries=0
        )
        assert FACT in ask(str(job.fine_tuned_model))
        assert FACT not in ask(BUNDLED)
        # Exported as a GGUF merged into the base: llama.cpp outside Afinar knows the fact too.
        exported = http.get(
            f"/v1/afinar/models/{job.fine_tuned_model}/export",
            params={"format": "gguf"},
            headers={"authorization": "Bearer sk-fact"},
        )
        assert exported.status_code == 200, exported.text
    c.close()
    assert FACT in _ask_exported_gguf(exported.content, tmp_path / "export")


def _ask_exported_gguf(archive: bytes, directory: Path) -> str:
    """Unzip an export, serve its merged GGUF with a bare llama.cpp server and ask ``QUESTION``."""
    import io
    import zipfile

    import httpx

    from tests.support.llama_server import llama_server

    zipfile.ZipFile(io.BytesIO(archive)).extract("model.gguf", directory)
    with llama_server(directory / "model.gguf", threads=2) as url:
        body = {"messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "max_tokens": 16}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=120).json()
    return str(answer["choices"][0]["message"]["content"])
