"""LoRA adapters made on the spot, and engine requests on them (the inference and chat API tests)."""

from __future__ import annotations

import warnings
from pathlib import Path

from afinar.inference.types import GenerationRequest, SamplingParams

QUESTION = [{"role": "user", "content": "Which wheels should I buy for street skating?"}]


def make_adapter(base_dir: Path, out: Path, *, seed: int, chat_template: str | None = None) -> Path:
    """A randomly initialised LoRA adapter (non-zero B, so it changes outputs) saved to ``out``.

    With ``chat_template`` the adapter also carries its own tokenizer, as training stores it.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    if chat_template is not None:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(out)
    return out


def request(
    base: Path, adapter: Path | None = None, messages: list | None = None, **params: object
) -> GenerationRequest:
    return GenerationRequest(
        base_path=base,
        adapter_path=adapter,
        messages=messages or QUESTION,
        params=SamplingParams(**params),  # type: ignore[arg-type]
        context_length=256,
    )
