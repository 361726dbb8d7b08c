"""A sampling profile of a running process (py-spy), summarised as the functions that cost most.

`record(pid, seconds, out)` starts py-spy on a process for the length of a measured run and
returns the recorder; `summary(path)` reads its collapsed stacks and gives each function's
share of the samples, inclusive (the function and what it calls) and by itself (the leaf).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SPY = Path(sys.executable).with_name("py-spy")
TOP = 25


def record(pid: int, seconds: int, out: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    """py-spy on `pid` for `seconds`, collapsed stacks to `out`; wait on the result before use."""
    command = [str(SPY), "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass(frozen=True)
class Line:
    function: str
    inclusive: float  # share of samples with the function anywhere on the stack
    own: float  # share of samples with the function as the leaf


def _name(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/module.py:line)": the line is dropped, so
    # one function's samples add up whichever line they were on.
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/shared/", "/services/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})" if path else function


def summary(path: Path, top: int = TOP) -> list[Line]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_name(f) for f in stack.split(";")]
        for function in set(frames):
            inclusive[function] += count
        if frames:
            own[frames[-1]] += count
    if total == 0:
        return []
    ranked = sorted(inclusive, key=lambda f: (own[f], inclusive[f]), reverse=True)[:top]
    return [Line(f, inclusive[f] / total, own[f] / total) for f in ranked]


def render(name: str, lines: list[Line]) -> str:
    rows = [f"profile of {name} (py-spy, share of samples): own | inclusive | function"]
    rows += [f"  {line.own:6.1%} | {line.inclusive:6.1%} | {line.function}" for line in lines]
    return "\n".join(rows)
