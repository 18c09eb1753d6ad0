"""Batched LoRA for a decode batch whose rows use different adapters of one base model.

peft's mixed batch (``adapter_names=``) loops over the adapters in every LoRA layer, gathering and
scattering each adapter's rows. Here every layer instead concatenates the batch's adapters once
(A: ``[in, R]``, B: ``[R, out]``, R = sum of ranks) and adds, for all rows at once,
``((x @ A) * mask) @ B``, where ``mask[row]`` holds the row's adapter scaling on that adapter's
rank block and zeros elsewhere (so base-model rows get nothing). Three ops per layer whatever the
number of adapters; the concatenations are rebuilt only when the set of adapters changes, the
masks only when the batch's rows change.

Plain LoRA on ``nn.Linear`` layers only (no DoRA or other variants, no LoRA bias); anything else
falls back to peft's mixed batch (:meth:`MixedLoRA.supports`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

Block = tuple[str, int, int, float]  # adapter name, start, end, scaling


class MixedLoRA:
    def __init__(self) -> None:
        self._layers: list[Any] = []
        self._hooks: list[Any] = []
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor, list[Block]]] = {}
        self._adapters: tuple[str, ...] = ()
        self._masks: dict[int, torch.Tensor] = {}
        self._rows: tuple[str | None, ...] = ()
        self._active = False
        self._supported: dict[tuple[str, ...], bool] = {}

    def invalidate(self) -> None:
        """Forget cached weights (an adapter was loaded or deleted)."""
        self._weights, self._adapters, self._masks, self._rows = {}, (), {}, ()
        self._supported = {}

    def supports(self, layers: list[Any], rows: list[str | None]) -> bool:
        from peft.tuners.lora.layer import Linear

        key = tuple(sorted({n for n in rows if n is not None}))
        known = self._supported.get(key)
        if known is not None:
            return known
        ok = True
        for layer in layers:
            if not isinstance(layer, Linear) or getattr(layer, "merged", False):
                ok = False
                break
            for name in set(key) & set(layer.lora_A.keys()):
                if name in layer.lora_variant or layer.lora_B[name].bias is not None:
                    ok = False
        self._supported[key] = ok
        return ok

    def _install(self, layers: list[Any]) -> None:
        if [id(x) for x in layers] == [id(x) for x in self._layers]:
            return
        for handle in self._hooks:
            handle.remove()
        self._layers = list(layers)
        self._hooks = [layer.register_forward_hook(self._hook) for layer in self._layers]
        self.invalidate()

    def _prepare(self, rows: tuple[str | None, ...]) -> None:
        adapters = tuple(sorted({n for n in rows if n is not None}))
        if adapters != self._adapters:
            self._weights = {}
            for layer in self._layers:
                blocks: list[Block] = []
                a_parts, b_parts = [], []
                start = 0
                for name in adapters:
                    if name not in layer.lora_A:
                        continue
                    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight  # [r, in], [out, r]
                    blocks.append((name, start, start + a.shape[0], float(layer.scaling[name])))
                    start += a.shape[0]
                    a_parts.append(a)
                    b_parts.append(b)
                if blocks:
                    a_cat = torch.cat(a_parts, dim=0).t().contiguous()
                    b_cat = torch.cat(b_parts, dim=1).t().contiguous()
                    self._weights[id(layer)] = (a_cat, b_cat, blocks)
            self._adapters, self._rows = adapters, ()
        if rows != self._rows:
            self._masks = {}
            for key, (a_cat, _, blocks) in self._weights.items():
                mask = torch.zeros((len(rows), 1, a_cat.shape[1]), dtype=a_cat.dtype)
                for name, lo, hi, scale in blocks:
                    for i, row in enumerate(rows):
                        if row == name:
                            mask[i, 0, lo:hi] = scale
                self._masks[key] = mask
            self._rows = rows

    @contextmanager
    def applied(self, layers: list[Any], rows: list[str | None]) -> Iterator[None]:
        """Within the block, LoRA layers (switched off by the caller) add each row's adapter."""
        self._install(layers)
        self._prepare(tuple(rows))
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def _hook(self, layer: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if not self._active:
            return None
        weights = self._weights.get(id(layer))
        if weights is None:
            return None
        a_cat, b_cat, _ = weights
        x = args[0]
        mask = self._masks[id(layer)]
        if x.dim() == 2:
            mask = mask[:, 0, :]
        return output + torch.matmul(torch.matmul(x, a_cat) * mask, b_cat)
