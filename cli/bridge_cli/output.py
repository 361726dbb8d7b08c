"""Output the commands share: `--json`, progress bars, masking (docs/cli.md, "Output").

With `--json`, stdout carries JSON only: a listing one object a line (JSON Lines, empty when
nothing matches), a report or a single item one object. Messages and progress go to stderr,
and the exit status is the same as without `--json`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bridge.logs import masked

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout (docs/cli.md)")]
ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="A progress bar on stderr (default: when stderr is a terminal and not --json).",
    ),
]

Advance = Callable[[int], None]


def to_json(value: Any) -> str:
    # Non-JSON values (datetimes, decimals) as text rather than a crash.
    return orjson.dumps(value, default=str).decode()


def print_json(value: Any) -> None:
    """One JSON document: a report or a single item."""
    typer.echo(to_json(value))


def print_json_lines(items: Iterable[Mapping[str, Any]]) -> None:
    """A listing: one JSON object a line."""
    for item in items:
        typer.echo(to_json(item))


def shown(value: Any) -> Any:
    """What the CLI may print of stored data: any phone number in it masked as logs mask it
    (the stores hold sealed numbers; free text such as errors is masked here in case)."""
    return masked(value)


def wants_progress(option: bool | None, as_json: bool) -> bool:
    """--progress/--no-progress when given; else a bar only for a person watching stderr."""
    if option is not None:
        return option
    return not as_json and sys.stderr.isatty()


@contextmanager
def progress_bar(label: str, total: int, *, visible: bool) -> Iterator[Advance]:
    """A bar on stderr (cleared when done); yields the function that advances it by n."""
    if not visible or total <= 0:
        yield lambda _n: None
        return
    # force_terminal: --progress asks for the bar even when stderr is not a terminal.
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, force_terminal=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
