"""The real bundled ``smollm2-135m-instruct``: converted from its GGUF, fine-tuned for a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.test_jobs import run_worker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "skateboard"
BUNDLED = "smollm2-135m-instruct"


@pytest.mark.slow
def test_fine_tune_the_bundled_model_for_a_few_steps(tmp_path: Path, bundled_models_dir: Path) -> None:
    import openai
    from fastapi.testclient import TestClient

    from afinar.api.app import create_app
    from afinar.config import Settings
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    settings = Settings(
        data_dir=tmp_path / "data",
        models_path=bundled_models_dir,
        embedded_worker=False,
        bootstrap_api_key="sk-slow",
        safety_eval_max_new_tokens=8,
    )
    c = Container(settings)
    c.migrate()
    bootstrap(c.db, "default", "sk-slow")
    lines = (EXAMPLES / "train.jsonl").read_text().splitlines()[:10]
    with TestClient(create_app(c)) as http:
        client = openai.OpenAI(
            base_url="http://testserver/v1", api_key="sk-slow", http_client=http, max_retries=0
        )
        fid = client.files.create(file=("train.jsonl", "\n".join(lines).encode()), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model=BUNDLED,
            training_file=fid,
            seed=1,
            hyperparameters={"n_epochs": 1, "batch_size": 5},
        )
        run_worker(c)
        job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{BUNDLED}:default::")
        events = client.fine_tuning.jobs.list_events(job.id, limit=50).data
        losses = [e.data["train_loss"] for e in events if e.type == "metrics"]  # type: ignore[index]
        assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)
        assert job.trained_tokens and job.trained_tokens > 10 * 50  # ten real conversations, all tokens
    c.close()
