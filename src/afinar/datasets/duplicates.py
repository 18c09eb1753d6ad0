"""Duplicate-example detection in bounded memory.

``DuplicateDetector`` remembers examples by a 64-bit fingerprint of their canonical JSON digest
in an open-addressing table of flat arrays (12 bytes a slot, kept at most 3/4 full, grown by
doubling). Up to ``exact_capacity`` examples (default 393,216: a 524,288-slot table, 6 MiB) the
answer is exact and names the first example: "Example N is a duplicate of example M". A false
match needs two different examples with the same 64-bit fingerprint: with a million examples
that has a probability of about 3e-8.

Past the cap the table stops growing and later examples go into a Bloom filter of fixed size
(default 4 MiB, 5 hash functions). An example matching only the filter is reported as "likely"
a duplicate of an earlier example, without a number: the filter can answer yes for an example it
has not seen. Its false-positive rate after ``k`` examples past the cap is about
``(1 - exp(-5k / 2^25))^5``: 5e-5 at one million examples past the cap, 4 % at five million
(files that size are over the default upload limit of 512 MB unless their examples are tiny).
A duplicate is a warning, never an error, so an approximate answer is never fatal.

Memory is therefore at most ``12 * table_slots + bloom_bytes`` (10 MiB by default), whatever the
number of examples.
"""

from __future__ import annotations

from array import array
from typing import Final

DEFAULT_TABLE_SLOTS: Final = 1 << 19
DEFAULT_BLOOM_BYTES: Final = 1 << 22
_BLOOM_HASHES: Final = 5
_INITIAL_SLOTS: Final = 1 << 10
_MASK64: Final = (1 << 64) - 1

LIKELY: Final = -1  # ``check`` result: the Bloom filter has (probably) seen the example


class DuplicateDetector:
    """Answers, for each digest in turn, whether an earlier example had it."""

    def __init__(
        self, table_slots: int = DEFAULT_TABLE_SLOTS, bloom_bytes: int = DEFAULT_BLOOM_BYTES
    ) -> None:
        if table_slots < 2 or table_slots & (table_slots - 1):
            raise ValueError("table_slots must be a power of two")
        if bloom_bytes < 1:
            raise ValueError("bloom_bytes must be positive")
        self.max_slots = table_slots
        self.bloom_bytes = bloom_bytes
        self._slots = min(_INITIAL_SLOTS, table_slots)
        self._keys = array("Q", [0]) * self._slots  # 0: empty slot
        self._lines = array("I", [0]) * self._slots
        self._used = 0
        self._bloom: bytearray | None = None

    @property
    def exact_capacity(self) -> int:
        return self.max_slots * 3 // 4

    @property
    def nbytes(self) -> int:
        """Bytes held by the table and the filter."""
        table = self._keys.itemsize * len(self._keys) + self._lines.itemsize * len(self._lines)
        return table + (len(self._bloom) if self._bloom is not None else 0)

    def check(self, digest: bytes, line: int) -> int | None:
        """The first line with this digest, ``LIKELY`` for a probable one past the cap, or None.

        ``digest`` must be at least 16 uniformly distributed bytes (a cryptographic hash);
        a digest not seen before is remembered under ``line``.
        """
        key = int.from_bytes(digest[:8], "little") or 1
        keys, mask = self._keys, self._slots - 1
        slot = key & mask
        while True:  # linear probing from the key's low bits (the key is already a uniform hash)
            k = keys[slot]
            if k == key:
                return int(self._lines[slot])
            if not k:
                break
            slot = (slot + 1) & mask
        if self._bloom is not None and self._bloom_check_add(digest):
            return LIKELY
        if self._used + 1 > self._slots * 3 // 4:
            if self._slots < self.max_slots:
                self._grow()
                slot = self._find(key)
            else:
                if self._bloom is None:
                    self._bloom = bytearray(self.bloom_bytes)
                self._bloom_check_add(digest)
                return None
        self._keys[slot] = key
        self._lines[slot] = line
        self._used += 1
        return None

    def _find(self, key: int) -> int:
        """The empty slot where a new ``key`` goes."""
        keys, mask = self._keys, self._slots - 1
        slot = key & mask
        while keys[slot]:
            slot = (slot + 1) & mask
        return slot

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines  # re-inserted lazily: no per-key objects kept
        self._slots *= 2
        self._keys = array("Q", [0]) * self._slots
        self._lines = array("I", [0]) * self._slots
        mask = self._slots - 1
        for k, line in zip(old_keys, old_lines, strict=True):
            if not k:
                continue
            slot = k & mask
            while self._keys[slot]:
                slot = (slot + 1) & mask
            self._keys[slot] = k
            self._lines[slot] = line

    def _bloom_check_add(self, digest: bytes) -> bool:
        """Whether all of the digest's bits were already set; sets them."""
        bloom = self._bloom
        assert bloom is not None
        nbits = len(bloom) * 8
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:16], "little") | 1
        present = True
        for i in range(_BLOOM_HASHES):
            bit = ((h1 + i * h2) & _MASK64) % nbits
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not bloom[byte] & mask:
                present = False
                bloom[byte] |= mask
        return present
