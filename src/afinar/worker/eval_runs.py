"""Execute eval runs: claim queued runs, generate samples through the serving path, grade them,
write fenced results.

``EvalRunner`` holds what running needs (database, chat preparation, engine, metering, sealed
blobs, settings); the worker builds one (``worker/loop.py``). ``EvalRunner.run_queued(owner)``
claims one queued standalone run (``queue/leases.py``: lease + heartbeat, like jobs) and executes
it; the worker's short lane calls it, so a run never waits behind training. The fine-tuning eval
gate (``worker/eval_gate.py``) executes its two runs with ``EvalRunner.executor``.

Generation goes through ``ChatService.prepare`` (the same model resolution, chat template and EOS
as ``/v1/chat/completions``) and the engine; items are generated ``CHUNK`` at a time so the engine
batches them. Every generation (samples and judge calls) is metered like a chat completion, with a
key derived from the run, the item and the grader, so a resumed run never bills twice.

Results are written a chunk at a time in a transaction fenced by the run's lease: cancelling or
deleting the run makes the next write fail (``LeaseLost``) and the run stops. A run picked up again
after a crash skips the items already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.domain import eval_results
from afinar.domain.evals import COMPLETED, FAILED, IN_PROGRESS, QUEUED, Row
from afinar.domain.webhooks import RUN_FAILED, RUN_SUCCEEDED
from afinar.errors import AfinarError, LeaseLost, QuotaExceeded, RateLimited
from afinar.evals import criteria as crit
from afinar.evals import template as tpl
from afinar.queue.leases import RunLease, claim_run, fence_run
from afinar.services.chat import plain_request
from afinar.services.orgs import Principal
from afinar.store import evals as repo
from afinar.store import files as files_repo
from afinar.store import webhooks as outbox
from afinar.store.tables import EvalOutputItem, EvalRun

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.config import Settings
    from afinar.domain.models import ServableModel
    from afinar.inference.protocol import InferenceEngine
    from afinar.inference.types import GenerationRequest
    from afinar.services.chat import ChatService, InferenceMeter, SpendGate
    from afinar.store.db import Database

log = logging.getLogger("afinar.evals")

CHUNK = 8
RATE_LIMIT_RETRIES = 30


@dataclass(frozen=True)
class Generated:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Generator:
    """Chat generation for one organisation, through ``ChatService.prepare`` and the engine."""

    def __init__(self, chat: ChatService, engine: Callable[[], InferenceEngine], org_id: str) -> None:
        self.chat = chat
        self.engine = engine
        self.org_id = org_id
        self._prepared: dict[str, tuple[GenerationRequest, ServableModel]] = {}

    def prepare(
        self, model: str, sampling: dict[str, Any], servable: ServableModel | None = None
    ) -> tuple[GenerationRequest, ServableModel]:
        """A request template for ``model`` (or for an unpublished ``servable``: a gate's tuned model)."""
        key = json.dumps([model, sampling, str(servable.adapter_path) if servable else None], sort_keys=True)
        if key not in self._prepared:
            name = servable.base_id if servable else model
            request = plain_request(name, [{"role": "user", "content": "."}], sampling)
            prepared = asyncio.run(self.chat.prepare(self.org_id, request))
            generation, resolved = prepared.generation, prepared.servable
            if servable is not None:
                generation = dataclasses.replace(
                    generation, base_path=servable.base_path, adapter_path=servable.adapter_path
                )
                resolved = servable
            self._prepared[key] = (generation, resolved)
        return self._prepared[key]

    def many(self, requests: Sequence[GenerationRequest]) -> list[Generated | BaseException]:
        async def one(request: GenerationRequest) -> Generated:
            from afinar.inference.assemble import ChoiceAssembler, ToolMode, merge

            engine = await asyncio.to_thread(self.engine)
            for attempt in range(RATE_LIMIT_RETRIES):
                try:
                    result = await engine.generate(request)
                    break
                except RateLimited as exc:  # the engine's queue is full of other traffic: wait our turn
                    if attempt == RATE_LIMIT_RETRIES - 1:
                        raise
                    await asyncio.sleep(min(5.0, exc.retry_after))
            choice = result.choices[0]
            assembler = ChoiceAssembler(0, ToolMode(), False)
            merged = merge(
                assembler.feed(choice.text) + assembler.finish(choice.finish_reason or "stop"), False
            )
            return Generated(
                merged.get("content") or "",
                merged.get("finish_reason") or "stop",
                result.prompt_tokens,
                result.completion_tokens,
            )

        async def all_of() -> list[Generated | BaseException]:
            return list(await asyncio.gather(*(one(r) for r in requests), return_exceptions=True))

        return asyncio.run(all_of())


def _messages_for(data_source: dict[str, Any], ctx: dict[str, Any]) -> list[dict[str, Any]]:
    spec = data_source["input_messages"]
    if spec["type"] == "item_reference":
        value = tpl.lookup(spec["item_reference"], ctx)
        if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
            raise tpl.TemplateError(f"'{spec['item_reference']}' is not a list of chat messages")
        return [{"role": m["role"], "content": tpl.as_text(m.get("content"))} for m in value]
    return [{"role": m["role"], "content": tpl.render(m["content"], ctx)} for m in spec["template"]]


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


GRADER_ERROR = "grader_error"


def _errored_result(c: dict[str, Any], reason: str) -> dict[str, Any]:
    """The result of a grader that could not decide: ``errored``, never a pass, never counted as a
    failure or in a mean score (``score`` is 0 only because OpenAI's shape requires a number)."""
    return {
        "name": c["name"],
        "type": c["type"],
        "score": 0.0,
        "passed": False,
        "sample": None,
        "error": reason,
        "errored": True,
    }


def output_item_id() -> str:
    return "outputitem_" + secrets.token_hex(16)


class EvalRunner:
    """Runs eval runs: standalone runs from the queue, and the runs of a fine-tuning eval gate."""

    def __init__(
        self,
        *,
        db: Database,
        chat: ChatService,
        engine: Callable[[], InferenceEngine],
        limits: SpendGate,
        usage: InferenceMeter,
        sealed: SealedBlobs,
        settings: Settings,
    ) -> None:
        self.db = db
        self.chat = chat
        self.engine = engine  # created on first use (it may load torch)
        self.limits = limits
        self.usage = usage
        self.sealed = sealed
        self.settings = settings

    def executor(
        self,
        lease: RunLease,
        *,
        servable: ServableModel | None = None,
        should_stop: Callable[[], bool] | None = None,
        lease_seconds: float | None = None,
    ) -> RunExecutor:
        """The executor of one leased run (``servable``: a gate's unpublished tuned model)."""
        return RunExecutor(
            self, lease, servable=servable, should_stop=should_stop, lease_seconds=lease_seconds
        )

    def run_queued(self, owner: str) -> bool:
        """Claim and execute one queued eval run; False when there was none."""
        lease_seconds = self.settings.lease_seconds
        lease = claim_run(self.db, owner, lease_seconds)
        if lease is None:
            return False
        log.info("worker %s claimed eval run %s", owner, lease.run_id)
        lost = threading.Event()

        def beat() -> None:
            while not lost.wait(self.settings.heartbeat_seconds):
                try:
                    with self.db.session() as s:
                        fence_run(s, lease, lease_seconds)
                except LeaseLost:
                    lost.set()
                except Exception:  # a transient database error: try again next beat
                    log.exception("eval run heartbeat failed")

        thread = threading.Thread(target=beat, daemon=True, name="afinar-eval-heartbeat")
        thread.start()
        try:
            self.executor(lease, should_stop=lost.is_set, lease_seconds=lease_seconds).run()
        except LeaseLost:
            log.info("eval run %s: lease lost (canceled or deleted)", lease.run_id)
        finally:
            lost.set()
        return True


class RunExecutor:
    """Runs one leased eval run to its end (completed, failed), or until its lease is lost."""

    def __init__(
        self,
        runner: EvalRunner,
        lease: RunLease,
        *,
        servable: ServableModel | None = None,
        should_stop: Callable[[], bool] | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.runner = runner
        self.db = runner.db
        self.lease = lease
        self.servable = servable
        self.should_stop = should_stop or (lambda: False)
        self.lease_seconds = lease_seconds
        self._judge_usage: list[tuple[str, int, int]] = []

    def write(self, fn: Callable[[Any, EvalRun], Any]) -> Any:
        with self.db.session() as s:
            return fn(s, fence_run(s, self.lease, self.lease_seconds))

    def run(self) -> str:
        run = self.write(self._start)
        if run.status != IN_PROGRESS:
            return str(run.status)
        try:
            self._execute(run)
        except LeaseLost:
            raise
        except AfinarError as exc:
            self._fail(exc.code or "run_error", exc.message)
            return FAILED
        except Exception as exc:  # a bug or an unreadable file: the run's failure, not the worker's
            log.exception("eval run %s failed", run.id)
            self._fail("server_error", f"The eval run failed: {exc}")
            return FAILED
        return COMPLETED

    def _start(self, s: Any, run: EvalRun) -> EvalRun:
        if run.status == QUEUED:
            run.status = IN_PROGRESS
            run.started_at = int(self.db.now())
        return run

    def _fail(self, code: str, message: str) -> None:
        def _do(s: Any, run: EvalRun) -> None:
            run.status = FAILED
            run.error = _error(code, message)
            outbox.emit_run(s, RUN_FAILED, run)
            run.finished_at = int(self.db.now())
            run.lease_owner = None
            run.lease_expires_at = None

        self.write(_do)

    def _execute(self, run: EvalRun) -> None:
        with self.db.session() as s:
            ev = repo.get_eval(s, run.org_id, run.eval_id)
            done = repo.done_item_ids(s, run.id)
        if ev is None:
            raise AfinarError("The eval of this run was deleted.", code="eval_not_found")
        criteria: list[dict[str, Any]] = list(ev.testing_criteria)
        principal = Principal(run.org_id, "", run.api_key_id or "", run.project_id)
        gen = Generator(self.runner.chat, self.runner.engine, run.org_id)
        scratch = contextlib.ExitStack()  # decrypted SQLite databases, removed when the run ends
        grading = crit.Grading(
            judge=self._judge(gen, principal, run), database_path=self._database(run.org_id, scratch)
        )
        rows = [Row.from_json(x) for x in run.items]
        todo = [i for i in range(len(rows)) if i not in done]
        completions = run.data_source.get("type") == "completions"
        template: tuple[GenerationRequest, ServableModel] | None = None
        if completions and todo:
            template = gen.prepare(
                str(run.model), run.data_source.get("sampling_params") or {}, self.servable
            )
        try:
            for start in range(0, len(todo), CHUNK):
                if self.should_stop():
                    raise LeaseLost("the fine-tuning job of this gate run stopped")
                self.runner.limits.check_chat_allowed(principal)
                chunk = todo[start : start + CHUNK]
                outputs = self._samples(run, rows, chunk, gen, template, principal)
                graded = [
                    self._grade(run, criteria, rows[i], i, sample, grading)
                    for i, sample in zip(chunk, outputs, strict=True)
                ]
                self._write_chunk(graded, criteria)
        except QuotaExceeded as exc:
            raise AfinarError(exc.message, code=exc.code or "insufficient_quota") from None
        finally:
            grading.close()
            scratch.close()
        self.write(lambda s, r: self._finish(s, r, criteria))

    def _write_chunk(self, graded: list[dict[str, Any]], criteria: list[dict[str, Any]]) -> None:
        def _do(s: Any, run: EvalRun) -> None:
            self._store(s, run, graded, criteria)

        self.write(_do)

    # --- samples ---------------------------------------------------------------------------------

    def _samples(
        self,
        run: EvalRun,
        rows: list[Row],
        chunk: list[int],
        gen: Generator,
        template: tuple[GenerationRequest, ServableModel] | None,
        principal: Principal,
    ) -> list[dict[str, Any]]:
        if template is None:  # jsonl: the samples are in the data
            return [_given_sample(rows[i], run.model) for i in chunk]
        base_request, servable = template
        sampling = run.data_source.get("sampling_params") or {}
        out: list[dict[str, Any] | None] = [None] * len(chunk)
        requests: list[tuple[int, GenerationRequest, list[dict[str, Any]]]] = []
        for k, i in enumerate(chunk):
            try:
                msgs = _messages_for(run.data_source, tpl.context(rows[i].item, None))
            except tpl.TemplateError as exc:
                out[k] = _sample([], None, run.model, sampling, _error("invalid_item", str(exc)))
                continue
            requests.append((k, dataclasses.replace(base_request, messages=msgs), msgs))
        results = gen.many([r for _, r, _ in requests])
        for (k, _, msgs), res in zip(requests, results, strict=True):
            if isinstance(res, BaseException):
                code = res.code if isinstance(res, AfinarError) and res.code else "generation_error"
                message = res.message if isinstance(res, AfinarError) else str(res)
                out[k] = _sample(msgs, None, run.model, sampling, _error(code, message))
                continue
            out[k] = _sample(msgs, res, run.model, sampling, None)
            self._meter(
                principal,
                f"{run.id}-{chunk[k]}",
                str(run.model),
                servable.base_id,
                res.prompt_tokens,
                res.completion_tokens,
            )
        return [o for o in out if o is not None]

    def _meter(
        self, principal: Principal, key: str, model: str, base_id: str, prompt: int, completion: int
    ) -> None:
        try:
            self.runner.usage.record_inference(principal, key, model, base_id, prompt, completion)
        except Exception:  # metering never fails an eval; the record is keyed, a retry is harmless
            log.exception("metering eval generation %s failed", key)

    def _judge(self, gen: Generator, principal: Principal, run: EvalRun) -> crit.Judge:
        def judge(
            model: str, messages: list[dict[str, str]], sampling: dict[str, Any], key: str
        ) -> crit.JudgeAnswer:
            request, servable = gen.prepare(model, sampling)
            res = gen.many([dataclasses.replace(request, messages=messages)])[0]
            if isinstance(res, BaseException):
                raise crit.GradeError(f"the judge {model} failed: {getattr(res, 'message', res)}")
            self._meter(
                principal,
                f"{run.id}-{key}",
                model,
                servable.base_id,
                res.prompt_tokens,
                res.completion_tokens,
            )
            self._judge_usage.append((model, res.prompt_tokens, res.completion_tokens))
            return crit.JudgeAnswer(res.text, model, res.prompt_tokens, res.completion_tokens)

        return judge

    def _database(self, org_id: str, scratch: contextlib.ExitStack) -> Callable[[str], Path]:
        """A database file's plaintext in a private scratch file that lives until ``scratch`` closes."""

        def path(file_id: str) -> Path:
            with self.db.session() as s:
                row = files_repo.get(s, org_id, file_id)
            if row is None:
                raise FileNotFoundError(f"no such file {file_id}")
            plain = self.runner.sealed.materialize(org_id, row.blob_key, suffix=".sqlite")
            return scratch.enter_context(plain)

        return path

    # --- grading ---------------------------------------------------------------------------------

    def _grade(
        self,
        run: EvalRun,
        criteria: list[dict[str, Any]],
        row: Row,
        index: int,
        sample: dict[str, Any],
        grading: crit.Grading,
    ) -> dict[str, Any]:
        if sample.get("error") is not None:
            return {
                "index": index,
                "item": row.item,
                "sample": sample,
                "results": [],
                "errored": True,
                "generated": False,
            }
        output = (sample.get("output") or [{}])[0].get("content")
        given = dict(row.sample or {})
        given["output_text"] = output if output is not None else given.get("output_text", "")
        ctx = tpl.context(row.item, given)
        results: list[dict[str, Any]] = []
        errors: list[str] = []
        for n, c in enumerate(criteria):
            try:
                results.append(crit.grade(c, ctx, grading, f"{index}-g{n}").to_json())
                continue
            except crit.GradeError as exc:
                reason = str(exc)
            except Exception as exc:  # a grader bug must not lose the whole run
                log.exception("grading item %s of %s with %s failed", index, run.id, c["name"])
                reason = f"grader error: {exc}"
            errors.append(f"{c['name']}: {reason}")
            results.append(_errored_result(c, reason))
        if errors:  # the item is errored (not failed); its sample says why, in OpenAI's error shape
            sample = {**sample, "error": _error(GRADER_ERROR, "; ".join(errors))}
        return {
            "index": index,
            "item": row.item,
            "sample": sample,
            "results": results,
            "errored": bool(errors),
            "generated": True,
        }

    def _store(
        self, s: Any, run: EvalRun, graded: list[dict[str, Any]], criteria: list[dict[str, Any]]
    ) -> None:
        now = int(self.db.now())
        usage = list(run.per_model_usage or [])
        done = repo.done_item_ids(s, run.id)
        for g in graded:
            if g["index"] in done:
                continue
            status = eval_results.item_status(g["results"], g["errored"])
            s.add(
                EvalOutputItem(
                    id=output_item_id(),
                    run_id=run.id,
                    eval_id=run.eval_id,
                    org_id=run.org_id,
                    created_at=now,
                    datasource_item_id=g["index"],
                    datasource_item=g["item"],
                    status=status,
                    results=g["results"],
                    sample=g["sample"],
                )
            )
            u = g["sample"].get("usage") or {}
            if run.data_source.get("type") == "completions" and g.get("generated", True):
                usage = eval_results.add_usage(
                    usage, str(run.model), u.get("prompt_tokens", 0), u.get("completion_tokens", 0)
                )
        for model, prompt, completion in self._judge_usage:
            usage = eval_results.add_usage(usage, model, prompt, completion)
        self._judge_usage.clear()
        run.per_model_usage = usage
        run.completed_items = len(done) + sum(1 for g in graded if g["index"] not in done)
        s.flush()
        self._recount(s, run, criteria)

    def _recount(self, s: Any, run: EvalRun, criteria: list[dict[str, Any]]) -> None:
        items = repo.all_items(s, run.id)
        counts = eval_results.result_counts(i.status for i in items)
        counts["total"] = len(run.items)
        run.result_counts = counts
        run.per_testing_criteria_results = eval_results.per_criteria(criteria, (i.results for i in items))

    def _finish(self, s: Any, run: EvalRun, criteria: list[dict[str, Any]]) -> None:
        self._recount(s, run, criteria)
        run.status = COMPLETED
        run.finished_at = int(self.db.now())
        outbox.emit_run(s, RUN_SUCCEEDED, run)
        run.lease_owner = None
        run.lease_expires_at = None


def _sample(
    messages: list[dict[str, Any]],
    res: Generated | None,
    model: str | None,
    sampling: dict[str, Any],
    error: dict[str, str] | None,
) -> dict[str, Any]:
    prompt = res.prompt_tokens if res else 0
    completion = res.completion_tokens if res else 0
    return {
        "input": messages,
        "output": [{"role": "assistant", "content": res.text}] if res else [],
        "finish_reason": res.finish_reason if res else "",
        "model": model or "",
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
        "error": error,
        "temperature": float(sampling.get("temperature", 1.0)),
        "top_p": float(sampling.get("top_p", 1.0)),
        "max_completion_tokens": int(sampling.get("max_completion_tokens", 0)),
        "seed": int(sampling.get("seed", 0)),
    }


def _given_sample(row: Row, model: str | None) -> dict[str, Any]:
    sample = row.sample or {}
    text = sample.get("output_text")
    out = _sample([], None, model or sample.get("model"), {}, None)
    out["output"] = [{"role": "assistant", "content": text}] if isinstance(text, str) else []
    out["finish_reason"] = "stop"
    return out
