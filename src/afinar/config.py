"""Settings: the only module that reads the environment (``AFINAR_*``).

Build one ``Settings`` at the edge (the CLI or a test) and pass it down.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFINAR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".afinar")
    # Where customer bytes (ciphertext) are stored (docs/deploy.md): empty means <data_dir>/blobs;
    # s3://bucket/prefix an S3-compatible store, reached through AWS_ENDPOINT_URL and AWS_* credentials.
    blob_url: str = ""
    # SQLAlchemy URL; empty means a SQLite file inside data_dir.
    database_url: str = ""
    # The first API key of the default organisation; generated (and printed once) when empty.
    bootstrap_api_key: str = ""
    default_org_name: str = "default"
    # The base model used where a request names none (the file report, the dashboard).
    default_model: str = "smollm2-135m-instruct"
    # Extra catalogue file (TOML) that adds or overrides base models.
    catalog_file: Path | None = None
    # Where converted base models live (default: <data_dir>/models); several data dirs may share one.
    models_path: Path | None = None
    # Convert the bundled base model in the background at start, so the first job does not wait.
    warm_models: bool = True

    # Worker
    embedded_worker: bool = True
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 1.0
    train_threads: int = 0  # 0: one per physical core
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    # Where and how precisely a training child runs (docs/architecture.md, "Hardware"): auto picks
    # CUDA when torch sees a GPU, else the CPU, and bf16 on a GPU that supports it, else fp32 (exact);
    # a forced choice the machine cannot run fails the job. Activation checkpointing: auto turns it
    # on when the largest batch would not fit the free GPU memory.
    train_device: Literal["auto", "cpu", "cuda"] = "auto"
    train_precision: Literal["auto", "fp32", "bf16"] = "auto"
    train_gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    # torch.compile of the decoder layers (docs/models.md, "Training speed on the CPU"): auto compiles
    # a bf16 job on the CPU when it trains enough tokens to amortise compiling.
    train_compile: Literal["auto", "on", "off"] = "auto"
    # Processes one training job runs data-parallel (docs/architecture.md, "Many processes"): 1 is
    # the single child; more start it through ``accelerate launch`` (one rank per GPU, or gloo on
    # the CPU). Extra ``accelerate launch`` arguments (shell syntax), e.g. for several machines.
    train_processes: int = Field(default=1, ge=1)
    train_launcher_args: str = ""
    # How several processes share a job (docs/architecture.md, "Many processes"): auto/fsdp shard a
    # full fine-tune's weights, gradients and optimizer state over the ranks (FSDP); ddp replicates
    # them. LoRA jobs always train replicated.
    train_sharding: Literal["auto", "fsdp", "ddp"] = "auto"
    # Peak FLOP/s of a training device, for MFU in the job's events (docs/admin.md); unset: the
    # GPU's bf16 peak from the built-in table, none on a CPU.
    train_peak_flops: float | None = Field(default=None, gt=0)
    # Worker lanes (docs/architecture.md): threads of each worker that train jobs at once (each runs
    # one training child), and threads for short work (validating new jobs' files, eval runs) that
    # never waits behind training. 0 turns a lane off on this worker (another one must run it).
    worker_training_slots: int = Field(default=1, ge=0)
    worker_short_slots: int = Field(default=2, ge=0)
    # The devices a worker advertises (docs/architecture.md, "Devices"): auto (what it finds), cpu
    # (hide its GPUs: it claims only jobs that run anywhere), cuda (no visible GPU is an error).
    worker_devices: Literal["auto", "cpu", "cuda"] = "auto"

    # Encryption at rest (docs/admin.md): the master key that wraps each organisation's data key,
    # base64 of 32 bytes, or a file holding it; neither: generated once into <data_dir>/master.key.
    master_key: SecretStr = SecretStr("")
    master_key_file: Path | None = None

    # Files
    max_upload_bytes: int = 512 * 1024 * 1024
    # The fine-tune-results CSV is served base64-encoded, as OpenAI serves it (false: plain CSV).
    results_csv_base64: bool = True
    # Retention (docs/admin.md): files older than this many days become content-free tombstones, for
    # organisations that set none of their own (unset: keep forever); the worker sweeps this often.
    file_retention_days: int | None = Field(default=None, ge=1)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Idempotency-Key answers are kept this long (docs/api.md, "Idempotent retries"); the worker sweeps them.
    idempotency_ttl_hours: float = Field(default=24.0, ge=24)

    # Serving
    # The inference backend (docs/serving.md): auto picks vllm (CUDA and the vllm package, or a
    # vLLM server URL), else llamacpp (the xllamacpp package), else builtin (transformers + peft).
    inference_backend: Literal["auto", "builtin", "llamacpp", "vllm"] = "auto"
    # llama.cpp backend: the GGUF type bases are converted to (q8_0 is half the size and about
    # twice as fast on CPUs; f16 keeps the weights and the built-in engine's greedy outputs), its
    # threads (0: one per CPU) and the requests it decodes at once.
    llamacpp_base_type: Literal["f16", "q8_0"] = "q8_0"
    llamacpp_threads: int = Field(default=0, ge=0)
    llamacpp_parallel: int = Field(default=8, ge=1)
    # llama.cpp servers ("lanes") per base, so requests of different adapters decode side by side
    # (docs/serving-llamacpp.md; 0: the wide lane plus four one-thread lanes per CPU, at most 8;
    # 1: one server, they take turns) and how long an idle one-thread lane lives; warm the
    # bundled base (convert, start) at `afinar serve`; convert each published adapter to a GGUF
    # LoRA when its job publishes (unset: when the backend resolves to llamacpp).
    llamacpp_lanes: int = Field(default=0, ge=0)
    llamacpp_lane_idle_s: float = Field(default=60.0, ge=0)
    llamacpp_warm: bool = True
    gguf_at_publish: bool | None = None
    # vllm backend (docs/serving.md): the OpenAI-compatible server's URL (http://gpu-node:8000)
    # and its --api-key; base directory names (or paths) -> the server's served model names,
    # when they differ; a directory shared with the vLLM node where adapters are written in
    # plaintext while loaded (needed when adapters are encrypted at rest), and that same directory
    # as the vLLM node mounts it (empty: the same path); seconds one completion may take.
    vllm_url: str = ""
    vllm_api_key: SecretStr = SecretStr("")
    vllm_served_models: dict[str, str] = Field(default_factory=dict)
    vllm_adapter_dir: Path | None = None
    vllm_adapter_dir_remote: str = ""
    vllm_timeout_seconds: float = Field(default=600.0, gt=0)
    adapter_cache_size: int = 8
    # Rows decoded together by the engine; on CPU 16 gave 1.5x the throughput of 8 for the
    # bundled model (bench/engine_batch_size.py); the safety evaluation sends this many at once.
    max_batch_size: int = Field(default=16, ge=1)
    # Bearer token required by GET /metrics; empty leaves it open (bind to loopback, or set it).
    metrics_token: str = ""
    max_queued_requests: int = 32

    # Client commands of the CLI (files, jobs, models, chat, usage): the server and the key.
    # Empty: OPENAI_BASE_URL / OPENAI_API_KEY, then http://<host>:<port>/v1 and bootstrap_api_key.
    base_url: str = ""
    api_key: str = ""
    openai_base_url: str = Field(default="", validation_alias="OPENAI_BASE_URL")
    openai_api_key: str = Field(default="", validation_alias="OPENAI_API_KEY")

    # Billing: an operator price book (TOML) that adds or overrides tiers and models of the bundled one,
    # free training tokens per organisation, per UTC day and per tier, and the last day they are given.
    pricebook_file: Path | None = None
    free_training_tokens_per_day: int = Field(default=1_000_000, ge=0)
    free_allowance_until: date | None = None

    # Moderation (docs/safety.md): the backend (builtin | guard | off), the score at which a
    # category is flagged (overridable per category, e.g. {"violence": 0.7}), the built-in
    # backend's exemplar file and embedding model directory (empty: the bundled ones), the
    # guard backend's catalogue model and prompt mode (instruction | template), and the training
    # data screen: a file is blocked when the share of flagged examples exceeds the fraction OR
    # when more than the given number of examples is flagged (0 turns that second rule off).
    moderation_backend: str = "builtin"
    moderation_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    moderation_category_thresholds: dict[str, float] = Field(default_factory=dict)
    moderation_exemplars_file: Path | None = None
    moderation_embedding_model: Path | None = None
    moderation_guard_model: str = ""
    moderation_guard_prompt: str = "instruction"
    moderation_screen_max_flagged_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    moderation_screen_max_flagged_examples: int = Field(default=50, ge=0)
    # Runtime moderation (per organisation, off by default): streamed output is moderated and
    # released in windows of at least this many characters.
    moderation_stream_window_chars: int = Field(default=200, ge=1)

    # Limits (docs/admin.md): requests per minute per API key (429 with retry-after; 0: off), and
    # jobs of one organisation trained at once (more stay queued until one ends; 0: no limit).
    rate_limit_per_minute: int = Field(default=0, ge=0)
    max_concurrent_jobs_per_org: int = Field(default=0, ge=0)
    # Where API nodes share rate-limit counters and dashboard sessions (store/shared_state.py):
    # empty means the database (AFINAR_DATABASE_URL); a redis:// URL uses Redis (the `redis` extra),
    # its keys named with this prefix.
    redis_url: str = ""
    redis_prefix: str = "afinar:"

    # Safety gates (server configuration; no job parameter can lower them)
    safety_screen: bool = True  # moderate every training example before any compute
    safety_eval: bool = True  # compare tuned vs base refusals before a model is published
    safety_eval_prompts: Path | None = None  # JSONL prompt set; default: the shipped smoke set
    # Named prompt set when safety_eval_prompts is empty: builtin (fast smoke set) | harmbench
    safety_prompt_set: Literal["builtin", "harmbench"] = "builtin"
    safety_eval_max_new_tokens: int = 48
    safety_max_compliance_increase: float = 0.10
    safety_max_absolute_compliance: float = 1.0  # 1.0 judges only the change (small bases comply anyway)
    safety_max_category_increase: float = 0.15

    # Test/diagnostic knobs (never needed in production)
    train_step_delay_seconds: float = Field(default=0.0, ge=0.0)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'afinar.db').resolve()}"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.data_dir / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def scratch_dir(self) -> Path:
        """Short-lived private plaintext copies (0600), removed after use and swept at start."""
        return self.data_dir / "scratch"
