"""A job's ``integrations`` checked as OpenAI checks them (a 400 naming the field) and echoed on the
job object in the checked shape. The forwarding itself: tests/worker/test_wandb.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.tiny_model import TINY


@pytest.fixture
def train_id(client: openai.OpenAI, tmp_path: Path) -> str:
    return client.files.create(file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune").id


def test_wandb_integration_is_echoed_with_every_field(client: openai.OpenAI, train_id: str) -> None:
    given = {"type": "wandb", "wandb": {"project": "skates", "tags": ["a", "b"]}}
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, integrations=[given])  # type: ignore[list-item]
    for seen in (job, client.fine_tuning.jobs.retrieve(job.id)):
        assert seen.integrations is not None and len(seen.integrations) == 1
        w = seen.integrations[0]
        assert w.type == "wandb" and w.wandb.project == "skates" and w.wandb.tags == ["a", "b"]
        assert w.wandb.name is None and w.wandb.entity is None
    plain = client.fine_tuning.jobs.create(model=TINY, training_file=train_id)
    assert plain.integrations == []


@pytest.mark.parametrize(
    ("integrations", "param"),
    [
        ({"type": "wandb"}, "integrations"),
        (["wandb"], "integrations[0]"),
        ([{"type": "slack", "slack": {}}], "integrations[0].type"),
        ([{"type": "wandb"}], "integrations[0].wandb"),
        ([{"type": "wandb", "wandb": {"name": "n"}}], "integrations[0].wandb.project"),
        ([{"type": "wandb", "wandb": {"project": ""}}], "integrations[0].wandb.project"),
        ([{"type": "wandb", "wandb": {"project": "p", "entity": 3}}], "integrations[0].wandb.entity"),
        ([{"type": "wandb", "wandb": {"project": "p", "tags": "x"}}], "integrations[0].wandb.tags"),
        ([{"type": "wandb", "wandb": {"project": "p", "tags": ["t" * 65]}}], "integrations[0].wandb.tags"),
        ([{"type": "wandb", "wandb": {"project": "p", "tags": ["t"] * 51}}], "integrations[0].wandb.tags"),
        ([{"type": "wandb", "wandb": {"project": "p"}}] * 2, "integrations[1]"),
    ],
)
def test_bad_integrations_are_400_with_param(
    client: openai.OpenAI, train_id: str, integrations: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, integrations=integrations)
    assert err.value.param == param and err.value.status_code == 400
    assert list(client.fine_tuning.jobs.list()) == []
