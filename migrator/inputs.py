"""Where input files live: local paths, and URLs that fsspec opens.

A ``file://`` URL is a local path and is read as one. Any other URL (``s3://``, ``gcs://``,
``https://``, ``memory://`` …) is opened with fsspec, installed with the ``cluster`` extra
(``pip install 'migration-bench[cluster]'``) or on its own (``pip install fsspec``, plus
the protocol's own package such as ``s3fs``). Such a unit keeps its URL as its path, so
every process that reads it — a worker on another machine too — opens it itself.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from migrator.errors import InputError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
FSSPEC_HINT = "pip install 'migration-bench[cluster]' (or pip install fsspec)"


def is_url(path: str) -> bool:
    """``s3://bucket/a.xml`` yes; ``/data/a.xml`` and ``C:\\data`` no."""
    return bool(_URL.match(path))


def local_path(item: str) -> str:
    """``file:///data/a.xml`` → ``/data/a.xml``; anything else as it is."""
    if item[:7].lower() == "file://":
        parts = urlsplit(item)
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"--input {item}: a file:// URL names a file on this machine "
                             f"(file:///path); mount {parts.netloc}'s folder instead")
        return unquote(parts.path)
    return item


def import_fsspec(item: str) -> ModuleType:
    try:
        import fsspec
    except ImportError:
        raise InputError(f"--input {item}: reading URLs needs fsspec: {FSSPEC_HINT}") \
            from None
    return fsspec


def _filesystem(url: str) -> tuple[Any, str]:
    fsspec = import_fsspec(url)
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package missing
        raise InputError(f"--input {url}: {exc}") from None
    return fs, str(path)


def open_input(path: str) -> IO[bytes]:
    """Open an input file for binary reading (raises OSError like ``open``)."""
    if not is_url(path):
        return open(path, "rb")
    fs, inner = _filesystem(path)
    f: IO[bytes] = fs.open(inner, "rb")
    return f


def input_size(path: str) -> int:
    """Bytes in an input file (raises OSError like ``os.stat``)."""
    if not is_url(path):
        import os

        return os.stat(path).st_size
    fs, inner = _filesystem(path)
    return int(fs.size(inner))


def expand_url(item: str) -> list[tuple[str, int]]:
    """A URL of a file, a folder (its ``*.xml`` files, recursively) or a glob → sorted
    ``(url, size)`` pairs."""
    fs, inner = _filesystem(item)
    try:
        if any(ch in inner for ch in "*?["):
            found = [p for p in sorted(fs.glob(inner)) if fs.isfile(p)]
            if not found:
                raise InputError(f"--input {item}: the pattern matches no file")
        elif fs.isdir(inner):
            found = sorted(p for p in fs.find(inner) if p.endswith(".xml"))
            if not found:
                raise InputError(f"--input {item}: the folder holds no .xml file")
        elif fs.isfile(inner):
            found = [inner]
        else:
            raise InputError(f"--input {item}: no such file or folder")
        return [(fs.unstrip_protocol(p), int(fs.size(p))) for p in found]
    except OSError as exc:
        raise InputError(f"--input {item}: cannot read: {exc}") from None
