"""Choosing the next token of one choice: penalties, logit bias, temperature, top-p, logprobs."""

from __future__ import annotations

import torch

from afinar.inference.text import TokenTexts
from afinar.inference.types import SamplingParams, TokenLogprob, TopLogprob


def make_generator(seed: int | None) -> torch.Generator:
    """One generator per request: the same seed and inputs give the same output."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed % (2**63))
    return generator


class Sampler:
    """The per-choice sampling state (token counts for the penalties)."""

    def __init__(self, params: SamplingParams, generator: torch.Generator, texts: TokenTexts) -> None:
        self.params = params
        self.generator = generator
        self.texts = texts
        self._counts: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    @property
    def greedy(self) -> bool:
        return self.params.temperature <= 0.0

    def _penalised(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        if not (p.presence_penalty or p.frequency_penalty or p.logit_bias):
            return logits
        logits = logits.clone()
        if self._counts is not None and (p.presence_penalty or p.frequency_penalty):
            # OpenAI: mu[j] - c[j] * alpha_frequency - (c[j] > 0) * alpha_presence
            logits -= self._counts * p.frequency_penalty + (self._counts > 0).float() * p.presence_penalty
        if p.logit_bias:
            if self._bias is None:
                self._bias = torch.zeros_like(logits)
                for token_id, bias in p.logit_bias.items():
                    if 0 <= token_id < logits.shape[-1]:
                        self._bias[token_id] = bias
            logits += self._bias
        return logits

    def choose(
        self, logits: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> tuple[int, TokenLogprob | None]:
        """Pick the next token from one row of float32 logits ``[vocab]``.

        ``allowed`` (bool ``[vocab]``, from a grammar) rules out every other token, whatever the
        penalties and bias say; logprobs stay those of the model's own distribution.
        """
        p = self.params
        scores = self._penalised(logits)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        if self.greedy:
            token_id = int(torch.argmax(scores))
        else:
            scores = scores / p.temperature
            probs = torch.softmax(scores, dim=-1)
            if p.top_p < 1.0:
                probs = _top_p(probs, p.top_p)
            token_id = int(torch.multinomial(probs, 1, generator=self.generator))
        if p.presence_penalty or p.frequency_penalty:
            if self._counts is None:
                self._counts = torch.zeros_like(logits)
            self._counts[token_id] += 1
        return token_id, (self._logprob(logits, token_id) if p.logprobs else None)

    def _logprob(self, logits: torch.Tensor, token_id: int) -> TokenLogprob:
        """Logprobs of the model's own distribution (before penalties and temperature)."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top: list[TopLogprob] = []
        if self.params.top_logprobs:
            values, indices = torch.topk(logprobs, self.params.top_logprobs)
            for value, index in zip(values.tolist(), indices.tolist(), strict=True):
                text, raw = self.texts.get(index)
                top.append(TopLogprob(token=text, logprob=float(value), bytes=raw))
        text, raw = self.texts.get(token_id)
        return TokenLogprob(token=text, logprob=float(logprobs[token_id]), bytes=raw, top_logprobs=top)


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches ``top_p`` (at least one)."""
    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    drop = cumulative - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    out = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return out / out.sum()
