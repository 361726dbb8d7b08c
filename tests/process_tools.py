"""Starting and stopping the bridge's processes in tests and benchmarks."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stop_process(
    popen: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
) -> None:
    """`sig` (a graceful stop by default), then SIGKILL if it is still running after `timeout`."""
    if popen.poll() is not None:
        return
    popen.send_signal(sig)
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def start_source(kind: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m ingest.sources <kind>` as the stack runs it, its output kept for the test."""
    return subprocess.Popen(
        [sys.executable, "-m", "ingest.sources", kind],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def stopped_cleanly(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then its output; it must have exited 0 within 30 s (killed otherwise)."""
    process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    assert code == 0, output
    return output
