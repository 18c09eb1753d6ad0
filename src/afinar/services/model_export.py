"""Model export: a fine-tuned model as files that run anywhere, streamed as one zip.

``GET /v1/afinar/models/{model}/export?format=...`` and ``afinar models export``:

- ``peft``: the PEFT adapter (the adapter download, ``ModelsService.export_archive``);
- ``merged``: the adapter merged into its base (``afinar.inference.merge``): a Hugging Face folder
  with safetensors weights in the base's dtype, config, generation config and tokenizer;
- ``gguf``: that merged model as one GGUF (f16, llama.cpp's own converter), the adapter alone as
  a GGUF LoRA (f32) and an Ollama ``Modelfile`` (``services/modelfile.py``).

Every archive holds ``model_card.json``. Exports are owner-scoped like the adapter download (the
same resolution: another organisation's model is ``model_not_found``) and audited
(``model.exported`` with the format). Tuned models are customer data, encrypted at rest: the
adapter is decrypted through the artefacts service into a private scratch directory, the merge and
the conversions write there only, and the directory is removed before the first byte is sent; the
archive itself spills, past 64 MiB, to an unnamed file in the scratch dir, gone once streamed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from afinar.errors import InvalidRequest
from afinar.inference.gguf import ADAPTER_GGUF
from afinar.services import audit, modelfile
from afinar.services.model_card import CARD_NAME

if TYPE_CHECKING:
    from afinar.blobs.scratch import Scratch
    from afinar.config import Settings
    from afinar.services.artefacts import ArtefactsService
    from afinar.services.models import ModelsService
    from afinar.store.db import Database

FORMATS = ("gguf", "merged", "peft")
MERGED_GGUF = "model.gguf"
MODELFILE = "Modelfile"
SPOOL_BYTES = 64 * 1024 * 1024
_STORED = (".safetensors", ".gguf", ".bin")  # weights do not compress: stored, not deflated
_NOT_EXPORTED = frozenset({CARD_NAME, "optimizer.pt", "state.json", "README.md"})

Card = Callable[[str, dict[str, Any]], dict[str, Any]]


def check_format(value: str | None) -> str:
    if not value:
        raise InvalidRequest(f"Choose an export format: one of {', '.join(FORMATS)}.", param="format")
    if value not in FORMATS:
        raise InvalidRequest(
            f"Unknown export format {value!r}: use one of {', '.join(FORMATS)}.", param="format"
        )
    return value


class ModelExporter:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        models: ModelsService,
        artefacts: ArtefactsService,
        scratch: Scratch,
    ) -> None:
        self.db = db
        self.settings = settings
        self.models = models
        self.artefacts = artefacts
        self.scratch = scratch

    def export(self, org_id: str, name: str, fmt: str | None, *, card: Card) -> Iterator[bytes]:
        """The archive of ``name`` in the format ``fmt``, built before the first chunk is returned.

        The model is resolved first: another organisation's is ``model_not_found`` whatever the
        format; a base model is a 400, as for the adapter download."""
        adapter = self.models.adapter_dir(org_id, name)
        fmt = check_format(fmt)
        if fmt == "peft":
            return self.models.export_archive(org_id, name, card=card, exported_as=fmt)
        base = self.models.resolve_servable(org_id, name).base_path
        exported = card(name, self.models.card(org_id, name))
        buf = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by _chunks()
            max_size=SPOOL_BYTES, dir=str(self.settings.scratch_dir)
        )
        try:
            with (
                self.scratch.directory(memory=False) as work,
                zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf,
            ):
                source = self._plaintext(org_id, adapter, work / "adapter")
                merged = work / "merged"
                self._merge(base, source, merged)
                if fmt == "merged":
                    _add_folder(zf, merged)
                else:
                    self._gguf(zf, base, source, merged, work, title=name)
                zf.writestr(CARD_NAME, json.dumps(exported, indent=2, sort_keys=True))
        except BaseException:
            buf.close()
            raise
        buf.seek(0)
        audit.record(self.db, audit.MODEL_EXPORTED, org_id, name, format=fmt)
        return _chunks(buf)

    def _plaintext(self, org_id: str, adapter: Path, target: Path) -> Path:
        """The adapter's files (decrypted when sealed) in the private directory ``target``."""
        target.mkdir(parents=True)
        for member, _size, stream in self.artefacts.members(org_id, adapter):
            if Path(member).name in _NOT_EXPORTED:
                continue
            path = target / member
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                shutil.copyfileobj(stream, out, 1024 * 1024)
        return target

    @staticmethod
    def _merge(base: Path, source: Path, merged: Path) -> None:
        if not (source / "adapter_config.json").is_file():  # a full fine-tune: already whole
            shutil.copytree(source, merged)
            return
        from afinar.inference.merge import merge_adapter

        merge_adapter(base, source, merged)

    @staticmethod
    def _gguf(zf: zipfile.ZipFile, base: Path, source: Path, merged: Path, work: Path, *, title: str) -> None:
        from afinar.inference.gguf import adapter_gguf, model_gguf

        _add_file(zf, model_gguf(merged, work / MERGED_GGUF), MERGED_GGUF)
        lora = None
        if (source / "adapter_config.json").is_file():
            lora = ADAPTER_GGUF
            shipped = source / ADAPTER_GGUF  # converted when the job published, sealed with it
            gguf = shipped if shipped.is_file() else adapter_gguf(source, base, work / ADAPTER_GGUF)
            _add_file(zf, gguf, lora)
        zf.writestr(MODELFILE, modelfile.render(merged, MERGED_GGUF, adapter_name=lora, title=title))


def _add_file(zf: zipfile.ZipFile, path: Path, arcname: str) -> None:
    kind = zipfile.ZIP_STORED if arcname.endswith(_STORED) else zipfile.ZIP_DEFLATED
    zf.write(path, arcname, compress_type=kind)


def _add_folder(zf: zipfile.ZipFile, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _add_file(zf, path, path.relative_to(folder).as_posix())


def _chunks(buf: IO[bytes]) -> Iterator[bytes]:
    with buf:
        while chunk := buf.read(1024 * 1024):
            yield chunk
