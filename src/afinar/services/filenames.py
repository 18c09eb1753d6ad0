"""User-supplied file names are metadata: made safe to store, list and show, and kept readable.

Storage keys are generated ids, so a name never reaches the file system; still, a name that is
echoed back (API, dashboard, ``Content-Disposition``) must not carry a path, control or bidi
characters, or unbounded length.
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 255
MAX_EXTENSION = 16
# Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned characters.
DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_filename(name: str | None, default: str = "upload") -> str:
    """The last path component of ``name`` without invisible characters, at most 255 characters.

    ``../../etc/passwd`` → ``passwd``; ``C:\\x\\data.jsonl`` → ``data.jsonl``; ``a\\u202egnp.jsonl`` →
    ``agnp.jsonl``; a name left empty (``..``) → ``default``.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch) not in DROPPED_CATEGORIES)
    text = " ".join(text.split()).strip(" .")
    if len(text) > MAX_LENGTH:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and len(ext) <= MAX_EXTENSION:
            text = stem[: MAX_LENGTH - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            text = text[:MAX_LENGTH]
    return text or default
