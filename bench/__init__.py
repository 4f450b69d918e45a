"""The `bench` command line: a thin adapter over the library functions."""

from importlib import metadata

try:
    __version__ = metadata.version("migration-bench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
