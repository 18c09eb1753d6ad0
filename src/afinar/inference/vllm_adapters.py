"""LoRA adapters registered at run time on a vLLM server (``/v1/load_lora_adapter``).

The server reads an adapter's files itself, when it is loaded and again whenever its own cache
evicted it, so they must stay readable there for as long as the adapter is registered: a
plaintext adapter on a shared file system is passed by its path; otherwise (adapters are
encrypted at rest) its files are written, decrypted, into a directory shared with the vLLM node
and removed when it is unloaded. The contract of the two endpoints is pinned by
``tests/inference/test_vllm_contract.py`` (vLLM 0.11.0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx

from afinar.errors import AfinarError, InvalidRequest, NotFound, ServerError
from afinar.inference.openai_wire import LOAD, UNLOAD, Transport, error_for, error_parts

log = logging.getLogger(__name__)

Opener = Callable[[Path], AbstractContextManager[Path]]


# --- adapters ---------------------------------------------------------------------------------


def adapter_name(adapter_path: Path) -> str:
    """The name an adapter is registered under: stable for a path, so that every Afinar node
    (and a restarted one) finds the adapter another one loaded."""
    return "afinar-" + hashlib.sha1(str(Path(adapter_path).resolve()).encode()).hexdigest()[:16]


@dataclass
class LoadedAdapter:
    path: Path
    name: str
    copy: Path | None  # our plaintext copy in the shared directory (removed on unload)
    users: int = 0
    doomed: bool = False  # unloaded (model deleted) while in use: removed when released


class AdapterPool:
    """The adapters registered on the server, least recently used first, at most ``capacity``.

    Thread-safe; every method may talk to the server (call it from a thread, not an event loop).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        capacity: int = 8,
        opener: Opener | None = None,
        shared_dir: Path | None = None,
        remote_dir: str = "",
    ) -> None:
        self.transport = transport
        self.capacity = max(1, capacity)
        self.opener = opener
        self.shared_dir = shared_dir
        self.remote_dir = remote_dir.rstrip("/")
        self._loaded: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._lock = threading.RLock()

    def acquire(self, adapter_path: Path) -> str:
        """Register the adapter on the server if needed; pinned until ``release``."""
        with self._lock:
            name = adapter_name(adapter_path)
            entry = self._loaded.get(name)
            if entry is None or entry.doomed:
                entry = self._load(Path(adapter_path), name)
                self._loaded[name] = entry
            self._loaded.move_to_end(name)
            entry.users += 1
            self._evict()
            return name

    def release(self, name: str) -> None:
        with self._lock:
            entry = self._loaded.get(name)
            if entry is None:
                return
            entry.users -= 1
            if entry.doomed and entry.users <= 0:
                self._loaded.pop(name, None)
                self._unregister(entry)
            self._evict()

    def reload(self, adapter_path: Path) -> None:
        """Register a pinned adapter again: the server forgot it (another Afinar node unloaded
        it, or the server restarted). Its pins are kept; a concurrent reload is harmless."""
        with self._lock:
            entry = self._loaded.get(adapter_name(adapter_path))
            if entry is None:
                raise ServerError(f"adapter {adapter_path} is not loaded")
            entry.copy = self._load(entry.path, entry.name).copy

    def unload(self, adapter_path: Path) -> bool:
        """Unregister a deleted model's adapter (once no request uses it); True if it was loaded."""
        with self._lock:
            entry = self._loaded.get(adapter_name(adapter_path))
            if entry is None or entry.doomed:
                return False
            if entry.users > 0:
                entry.doomed = True
            else:
                self._loaded.pop(entry.name)
                self._unregister(entry, timeout=5.0)  # shutting down: do not hang on a gone server
            return True

    def loaded(self) -> list[Path]:
        with self._lock:
            return [e.path for e in self._loaded.values() if not e.doomed]

    def unload_all(self) -> None:
        with self._lock:
            for entry in list(self._loaded.values()):
                self._loaded.pop(entry.name)
                self._unregister(entry, timeout=5.0)  # shutting down: do not hang on a gone server

    # --- internals -----------------------------------------------------------------------

    def _evict(self) -> None:
        while sum(1 for e in self._loaded.values() if not e.doomed) > self.capacity:
            victim = next((e for e in self._loaded.values() if e.users <= 0 and not e.doomed), None)
            if victim is None:
                return  # every loaded adapter is in use: shrink later
            self._loaded.pop(victim.name)
            self._unregister(victim)

    def _load(self, path: Path, name: str) -> LoadedAdapter:
        lora_path, copy = self._readable_path(path, name)
        try:
            response = self.transport.post(LOAD, {"lora_name": name, "lora_path": lora_path})
            if response.status_code != 200 and not _already_loaded(response):
                raise _load_error(response, path)
        except BaseException:
            if copy is not None:
                shutil.rmtree(copy, ignore_errors=True)
            raise
        log.info("loaded adapter %s on %s as %s", path, self.transport.url, name)
        return LoadedAdapter(path=path, name=name, copy=copy)

    def _unregister(self, entry: LoadedAdapter, timeout: float | None = None) -> None:
        """Unload from the server and remove our copy. Never raises: the adapter is forgotten
        here either way, and a failure must not fail the request whose load evicted it (an
        adapter the server still holds is reloaded idempotently, or unloaded by the next node)."""
        try:
            response = self.transport.post(UNLOAD, {"lora_name": entry.name}, timeout)
            if response.status_code not in (200, 404):  # 404: the server forgot it already
                raise error_for(response.status_code, response.text, response.headers)
            log.info("unloaded adapter %s (%s)", entry.path, entry.name)
        except AfinarError as exc:
            log.warning("could not unload adapter %s (%s): %s", entry.path, entry.name, exc)
        finally:
            if entry.copy is not None:
                shutil.rmtree(entry.copy, ignore_errors=True)

    def _readable_path(self, path: Path, name: str) -> tuple[str, Path | None]:
        """The path the server reads the adapter from, and our copy to remove later (if any)."""
        plain = (path / "adapter_config.json").is_file()
        if not plain and (path / "config.json").is_file():
            raise _full_model()
        if plain and self.shared_dir is None:
            return str(path.resolve()), None  # a shared file system, mounted at the same path
        if self.shared_dir is None:
            raise ServerError(
                "The adapter is encrypted at rest; set AFINAR_VLLM_ADAPTER_DIR to a directory the "
                "vLLM node can read, where Afinar writes loaded adapters (docs/serving.md)."
            )
        target = self.shared_dir / name
        if not (target / "adapter_config.json").is_file():
            self._copy(path, target, plain)
        remote = f"{self.remote_dir}/{name}" if self.remote_dir else str(target.resolve())
        return remote, target

    def _copy(self, path: Path, target: Path, plain: bool) -> None:
        """Write the adapter's plaintext files to ``target`` (atomically: a sibling renamed)."""
        assert self.shared_dir is not None
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.shared_dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if plain or self.opener is None:
            source_cm: AbstractContextManager[Path] = nullcontext(path)
        else:
            source_cm = self.opener(path)
        with source_cm as source:
            if not (source / "adapter_config.json").is_file():
                if (source / "config.json").is_file():
                    raise _full_model()
                raise NotFound(f"adapter not found at {path}", code="model_not_found")
            shutil.copytree(source, tmp)
        for root, dirs, files in os.walk(tmp):  # the vLLM node's user reads it through its group
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o750)
            for f in files:
                os.chmod(os.path.join(root, f), 0o640)
        tmp.chmod(0o750)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)


def _full_model() -> InvalidRequest:
    return InvalidRequest(
        "Full fine-tunes are not served by the vllm backend (vLLM loads LoRA adapters only).",
        param="model",
    )


def _already_loaded(response: httpx.Response) -> bool:
    """vLLM refuses a second load of a name with 400 "... has already been loaded": for us that
    is success (another Afinar node, or this one before a restart, loaded the same path)."""
    return response.status_code == 400 and "already been loaded" in response.text


def _load_error(response: httpx.Response, path: Path) -> AfinarError:
    message, _, _ = error_parts(response.text)
    if response.status_code == 404 or "No adapter found" in message:
        return ServerError(f"The inference server found no adapter files for {path}: {message}")
    if response.status_code in (400, 500):
        return ServerError(f"The inference server could not load the adapter {path}: {message}")
    return error_for(response.status_code, response.text, response.headers)
