"""How the worker words and records where a child trains, from the child's ``started`` line."""

from __future__ import annotations

from afinar.worker.runner import hardware_message, training_hardware


def test_a_compiled_run_says_so_and_an_eager_one_is_worded_as_before() -> None:
    started = {
        "event": "started",
        "device": "cpu",
        "precision": "bf16",
        "gradient_checkpointing": False,
        "compiled": True,
    }
    hw = training_hardware(started)
    assert hw == {"device": "cpu", "precision": "bf16", "gradient_checkpointing": False, "compiled": True}
    assert hardware_message(hw) == "Training on cpu in bf16 with compiled layers (torch.compile)"
    eager = training_hardware({k: v for k, v in started.items() if k != "compiled"})
    assert "compiled" not in eager
    assert hardware_message(eager) == "Training on cpu in bf16"


def test_a_sharded_run_says_so() -> None:
    started = {"event": "started", "device": "cpu", "precision": "fp32", "processes": 2, "sharding": "fsdp"}
    sharded = training_hardware(started)
    assert sharded["sharding"] == "fsdp"
    assert hardware_message(sharded) == "Training on cpu in fp32 in 2 processes (sharded, FSDP)"
    replicated = training_hardware(started | {"sharding": "ddp"})
    assert hardware_message(replicated) == "Training on cpu in fp32 in 2 processes"
