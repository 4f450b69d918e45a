"""The one place that imports rich; imported lazily so ``bench --help`` stays quick."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One line on stderr: what went wrong and what to do. No traceback."""
    from rich.markup import escape

    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "records",
                 enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A bar on stderr with ETA; yields ``update(completed, **fields)``."""
    err = console(stderr=True)
    if not enabled or not err.is_terminal:  # no bar (and no stray newline) in logs and CI
        yield lambda completed, **fields: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(),
                          TaskProgressColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    if unit != "bytes":
        columns.insert(3, MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(description, total=total, info="")

        def update(completed: int, **fields: Any) -> None:
            progress.update(task, completed=completed, **fields)

        yield update


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]
               ) -> list[str]:
    """Aligned plain-text columns (``right``: the indexes of right-aligned ones)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = ["-" * w if h else " " * w for h, w in zip(headers, widths, strict=True)]
    return [line(headers), line(rule), *(line(r) for r in rows)]


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def ci(low: float | None, high: float | None, confidence: float | None) -> str:
    if low is None or high is None:
        return "n/a"
    return f"{low:,.0f}–{high:,.0f} ({100 * (confidence or 0):.0f}%)"
