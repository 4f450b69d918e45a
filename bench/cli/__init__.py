"""The `bench` command line: :mod:`bench.cli.app` assembles one module per command;
:mod:`bench.cli.options` holds what they share. Command bodies parse options and call the
library."""

from bench.cli.app import app, main

__all__ = ["app", "main"]
