"""The encrypted blob stream format: round trips at segment boundaries, and tamper detection."""

from __future__ import annotations

import os

import pytest

from afinar.crypto.keys import KeyUnavailable, generate_key, unwrap, wrap
from afinar.crypto.stream import (
    HEADER_SIZE,
    SEGMENT,
    TAG,
    TamperedBlob,
    decrypt_chunks,
    encrypt_chunks,
    encrypted_size,
)

KEY = generate_key()


def seal(data: bytes, name: str = "org/files/a", key: bytes = KEY, chunk: int = 10_000) -> bytes:
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(encrypt_chunks(key, name, parts))


def open_(blob: bytes, name: str = "org/files/a", key: bytes = KEY, chunk: int = 7_777) -> bytes:
    return b"".join(decrypt_chunks(key, name, [blob[i : i + chunk] for i in range(0, len(blob), chunk)]))


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 5])
def test_round_trip_at_segment_boundaries(size: int) -> None:
    data = os.urandom(size)
    blob = seal(data)
    assert len(blob) == encrypted_size(size)
    assert open_(blob) == data
    assert size < 16 or data[:64] not in blob


def test_same_plaintext_encrypts_differently() -> None:
    assert seal(b"hello") != seal(b"hello")


def test_flipped_bit_is_detected() -> None:
    blob = bytearray(seal(os.urandom(SEGMENT + 10)))
    blob[HEADER_SIZE + 100] ^= 1
    with pytest.raises(TamperedBlob):
        open_(bytes(blob))


def test_truncation_at_a_segment_boundary_is_detected() -> None:
    blob = seal(os.urandom(2 * SEGMENT + 10))
    cut = blob[: HEADER_SIZE + 2 * (SEGMENT + TAG)]  # drop the (short) last segment
    with pytest.raises(TamperedBlob):
        open_(cut)
    with pytest.raises(TamperedBlob):
        open_(blob[:HEADER_SIZE])  # header only
    with pytest.raises(TamperedBlob):
        open_(blob[:-1])


def test_reordered_segments_are_detected() -> None:
    blob = seal(os.urandom(3 * SEGMENT))
    seg = SEGMENT + TAG
    h, s0, s1, rest = (
        blob[:HEADER_SIZE],
        blob[HEADER_SIZE : HEADER_SIZE + seg],
        blob[HEADER_SIZE + seg : HEADER_SIZE + 2 * seg],
        blob[HEADER_SIZE + 2 * seg :],
    )
    with pytest.raises(TamperedBlob):
        open_(h + s1 + s0 + rest)


def test_blobs_cannot_be_swapped_or_spliced() -> None:
    data = os.urandom(100)
    blob = seal(data, name="org/files/a")
    with pytest.raises(TamperedBlob):
        open_(blob, name="org/files/b")
    other = seal(os.urandom(2 * SEGMENT), name="org/files/a")
    with pytest.raises(TamperedBlob):  # a segment of another blob under the same name
        open_(blob[:HEADER_SIZE] + other[HEADER_SIZE + SEGMENT + TAG :])


def test_wrong_org_key_fails() -> None:
    blob = seal(b"secret")
    with pytest.raises(TamperedBlob):
        open_(blob, key=generate_key())


def test_not_a_blob() -> None:
    with pytest.raises(TamperedBlob):
        open_(b'{"messages": []}\n' * 3)


def test_wrapped_keys_are_bound_to_their_org() -> None:
    master = generate_key()
    data_key = generate_key()
    wrapped = wrap(master, "org-a", data_key)
    assert unwrap(master, "org-a", wrapped) == data_key
    with pytest.raises(KeyUnavailable):
        unwrap(master, "org-b", wrapped)
    with pytest.raises(KeyUnavailable):
        unwrap(generate_key(), "org-a", wrapped)
