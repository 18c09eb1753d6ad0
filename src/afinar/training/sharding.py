"""Sharded data parallelism for full fine-tunes: torch's FSDP2 (``fully_shard``) over the job's ranks.

A full fine-tune trained by several ranks (``distributed.py``) would otherwise hold the whole model,
its gradients and AdamW's two moments on every rank (16 bytes per parameter in fp32). Sharded, each
rank keeps 1/world of each: every decoder layer is one FSDP unit and the model itself the root unit
(the embeddings, the final norm and the LM head, which stays tied to the embeddings in that unit).
A unit's parameters are all-gathered just before it runs and freed after; its gradients are
reduce-scattered in the backward pass; the optimizer steps on the local shards only.

``AFINAR_TRAIN_SHARDING`` (the spec's ``sharding``) chooses: ``auto`` and ``fsdp`` shard a full
fine-tune over more than one process; ``ddp`` replicates it (gradients all-reduced by hand,
``distributed.Group``). LoRA always trains replicated: its trainable state is small.

What stays as with one process:

- **The loss and gradients.** Each rank back-propagates its loss sum over the global label count,
  as with DDP; FSDP's reduce-scatter averages over the ranks, so the loss is also multiplied by the
  world size and the summed shard gradients are the one-process gradients (up to the order of
  floating-point additions; exact scaling for a power-of-two world). Gradient clipping sees the
  global norm (the gradients are DTensors).
- **Collectives.** Every forward pass all-gathers, so every rank runs as many as the others: a rank
  without examples in a step scores a filler example with zero weight, and evaluation pads the
  ranks with fewer batches with filler batches whose scores are dropped.
- **Checkpoints.** Every rank takes part in gathering the full (unsharded) weights and optimizer
  state onto rank 0's CPU, which writes them exactly as the one-process run does: a checkpoint
  resumes on one process or on any number. Resuming loads the full weights on every rank (the same
  files, so no broadcast), then shards them; the optimizer state is loaded whole and each rank keeps
  its shard.
- **The label-only head.** The loss calls the backbone and the head directly rather than the
  model's ``forward``; that call is registered as a forward method of the root unit
  (``register_fsdp_forward_method``), so the root's parameters are gathered around it.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

from afinar.training.distributed import Group
from afinar.training.fast import decoder_layers
from afinar.training.model import TrainModel, label_forward

ShardingChoice = Literal["auto", "fsdp", "ddp"]
Strategy = Literal["single", "ddp", "fsdp"]
LABEL_FORWARD = "afinar_label_forward"


def strategy(choice: ShardingChoice, method: str, world: int) -> Strategy:
    """How a job of ``method`` trains over ``world`` ranks: alone, replicated (DDP) or sharded (FSDP)."""
    if world <= 1:
        return "single"
    if method == "full" and choice in ("auto", "fsdp"):
        return "fsdp"
    return "ddp"


def shard_model(tm: TrainModel, group: Group) -> None:
    """Shard ``tm``'s full model over the ranks of ``group`` in place: one FSDP unit per decoder layer,
    then the model as the root unit; the label-only forward runs through the root's hooks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(tm.placement.device.type, (group.world,))
    for layer in decoder_layers(tm.backbone):
        fully_shard(layer, mesh=mesh)
    fully_shard(tm.model, mesh=mesh)
    setattr(tm.model, LABEL_FORWARD, functools.partial(label_forward, tm.backbone, tm.head))
    register_fsdp_forward_method(tm.model, LABEL_FORWARD)
    tm.label_forward_fn = getattr(tm.model, LABEL_FORWARD)
    tm.sharded = True


def local_parameters(tm: TrainModel) -> int:
    """The parameter elements this rank holds (its shards; all of them when not sharded)."""
    from torch.distributed.tensor import DTensor

    return sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in tm.model.parameters())


def full_model_state(tm: TrainModel) -> dict[str, torch.Tensor]:
    """The unsharded weights, on rank 0's CPU (empty on the other ranks). Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = {k: v for k, v in get_model_state_dict(tm.model, options=options).items() if torch.is_tensor(v)}
    # Tied parameters (the head and the embeddings) come back as separate copies; make them one tensor
    # again, so the checkpoint leaves the tied name out as one process's ``save_pretrained`` does.
    first: dict[int, str] = {}
    for name, param in tm.model.named_parameters(remove_duplicate=False):
        source = first.setdefault(id(param), name)
        if source != name and source in state and name in state:
            state[name] = state[source]
    return state


def full_optimizer_state(optimizer: torch.optim.Optimizer, is_main: bool) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded tensor gathered whole: on rank 0, the same dict
    (parameter indices, CPU tensors) a one-process run saves; empty elsewhere. Collective."""
    from torch.distributed.tensor import DTensor

    local = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for index, values in sorted(local["state"].items()):
        entry: dict[str, Any] = {}
        for key, value in values.items():
            whole = value.full_tensor() if isinstance(value, DTensor) else value
            entry[key] = whole.cpu() if torch.is_tensor(whole) else whole
        state[index] = entry
    return {"state": state, "param_groups": local["param_groups"]} if is_main else {}


def shard_optimizer_state(optimizer: torch.optim.Optimizer, full: dict[str, Any]) -> dict[str, Any]:
    """A one-process optimizer state (``full_optimizer_state``'s or a one-process checkpoint's), each
    parameter's tensors cut to this rank's shard, ready for ``optimizer.load_state_dict``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for index, values in full["state"].items():
        param = params[int(index)]
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(param, DTensor) and torch.is_tensor(value) and value.shape == param.shape:
                local = value.to(param.device_mesh.device_type)
                value = distribute_tensor(local, param.device_mesh, param.placements)
            entry[key] = value
        state[int(index)] = entry
    return {"state": state, "param_groups": full["param_groups"]}
