"""Serving metrics in Prometheus' text format: requests, tokens, latency, queue depth, adapters.

One registry per container (so several apps in one process never share counters). The queue
depth and the loaded adapters are read from the engine at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from afinar.inference.protocol import InferenceEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineCollector(Collector):
    def __init__(self, loaded_engine: Callable[[], InferenceEngine | None]) -> None:
        self.loaded_engine = loaded_engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self.loaded_engine()  # only an engine that exists has a queue or adapters
        queue = GaugeMetricFamily(
            "afinar_inference_queue_depth", "Requests waiting for the inference engine."
        )
        queue.add_metric([], float(engine.queued()) if engine is not None else 0.0)
        yield queue
        adapters = GaugeMetricFamily(
            "afinar_inference_loaded_adapters",
            "LoRA adapters held in memory by the engine.",
            labels=["adapter"],
        )
        for path in engine.loaded_adapters() if engine is not None else []:
            adapters.add_metric([str(path.name)], 1.0)
        yield adapters


class ServingMetrics:
    def __init__(self, *, loaded_engine: Callable[[], InferenceEngine | None]) -> None:
        """``loaded_engine`` returns the inference engine if it was created (never creates it)."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "afinar_chat_requests", "Chat completion requests.", ["model", "outcome"], registry=self.registry
        )
        self.prompt_tokens = Counter(
            "afinar_chat_prompt_tokens",
            "Prompt tokens of chat completions.",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "afinar_chat_completion_tokens",
            "Generated tokens of chat completions.",
            ["model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "afinar_chat_request_seconds",
            "Time from request to the last token.",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(loaded_engine))

    def completed(self, model: str, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        self.requests.labels(model, "ok").inc()
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.completion_tokens.labels(model).inc(completion_tokens)
        self.latency.labels(model).observe(seconds)

    def failed(self, model: str) -> None:
        self.requests.labels(model, "error").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
