"""Generated record keys: derived from where a record is, never from a shared counter.

A record type with ``key = { generated = true }`` gets, for each record, a positive 63-bit
integer: the first 8 bytes of a BLAKE2b digest of the input file's path, the record
element's name and the record's ordinal among the elements of that name in the file
(1, 2, … in document order). The ordinal does not depend on how the file was cut into byte
ranges (a range counts the records before its start, see
:func:`migrator.partition.records_before`), on the worker or pipeline that read it, or on
where an interrupted run resumed: the same file at the same path gives every record the
same key in every run. Two different records could only share a key by a digest collision
(odds about n²/2⁶⁴ for n records); the primary key would then refuse the second one, which
is quarantined as a duplicate key, never stored over the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as AnyMapping


def generated_key(path: str, element: str, ordinal: int) -> int:
    """The key of the ``ordinal``-th ``<element>`` (1-based) of the file at ``path``."""
    blob = f"{path}\x00{element}\x00{ordinal}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


class KeyCounter:
    """Counts the records of one file (or byte range) per element name as they are read
    and gives the generated key of each; ``before``: the records each element had before
    the range's start."""

    def __init__(self, path: str, generated: frozenset[str],
                 before: AnyMapping[str, int] | None = None) -> None:
        self.path = path
        self.generated = generated
        self.counts: dict[str, int] = dict(before or {})

    def next(self, element: str) -> int | None:
        """Count one more ``<element>``; its key if its record type has generated keys."""
        n = self.counts.get(element, 0) + 1
        self.counts[element] = n
        return generated_key(self.path, element, n) if element in self.generated else None
