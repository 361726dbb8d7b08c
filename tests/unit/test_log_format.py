"""Issue 10: every line a service writes is one JSON object with `service`, `level` and
`timestamp`, whoever logs it (our code, faust, aiokafka, uvicorn), and lines written while an
event is handled carry its correlation fields.

Each case runs the real set-up in a child process and reads what it wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as JSON; fails on the first that is not one object."""
    lines = []
    for line in output.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        lines.append(record)
    return lines


def run_code(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a child interpreter in the repo; it must exit 0."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def assert_well_formed(lines: list[dict[str, Any]], service: str) -> None:
    assert lines
    for line in lines:
        assert line["service"] == service, line
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert line["timestamp"].endswith("Z"), line
        assert isinstance(line["event"], str), line


def test_the_dispatcher_worker_writes_only_json_lines(tmp_path: Path) -> None:
    """faust's worker sets logging up itself and prints a banner: neither shows. The broker
    is unreachable, so the worker starts, fails and stops, logging every step."""
    closed = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}",
        "DISPATCHER_INSTANCE": "logtest",
        "DISPATCHER_METRICS_PORT": str(free_port()),
        "DISPATCHER_DATADIR": str(tmp_path / "faust"),
        "LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = json_lines(done.stdout + done.stderr)
    assert_well_formed(lines, "dispatcher")
    loggers = {line.get("logger", "") for line in lines}
    assert any(name.startswith("faust.") for name in loggers), loggers
    assert "aiokafka" in loggers, loggers
    starting = next(line for line in lines if line["event"] == "dispatcher_starting")
    assert starting["broker"] == [f"kafka://127.0.0.1:{closed}"]
    # The worker's failure, with its traceback inside the one line.
    assert any("Traceback" in line.get("exception", "") for line in lines)


_SERVER = textwrap.dedent(
    """
    import sys
    from fastapi import FastAPI
    from bridge.edge import serve
    from bridge.logs import configure_logging

    configure_logging("web", "INFO")
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    serve(app, "127.0.0.1", int(sys.argv[1]), access_log=True)
    """
)


def test_uvicorn_error_and_access_lines_are_json() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answer = None
        while answer is None:  # until it listens (it exits, with its output, if it cannot)
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[0]
                time.sleep(0.05)
        assert answer.json() == {"hello": "world"}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    lines = json_lines(output)
    assert_well_formed(lines, "web")
    events = [(line.get("logger"), line["event"]) for line in lines]
    assert any(lg == "uvicorn.error" and "Started server process" in e for lg, e in events)
    assert any(lg == "uvicorn.access" and '"GET /hello HTTP/1.1" 200' in e for lg, e in events)


_CORRELATED = textwrap.dedent(
    """
    import logging
    from bridge import tracing
    from bridge.correlation import correlated
    from bridge.logs import configure_logging, get_logger

    configure_logging("svc", "INFO")
    log = get_logger("svc")
    span = tracing.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    with correlated(span, event_id="e-1", reference="moniepoint:MNP-1"):
        log.info("ours")
        logging.getLogger("aiokafka").warning("a library's record %s", "with args")
        logging.getLogger("faust.worker").info("another")
    log.info("after")
    logging.getLogger("aiokafka").info("after too")
    """
)


def test_library_records_carry_the_correlation_fields_of_the_event_in_hand() -> None:
    done = run_code(_CORRELATED)
    lines = json_lines(done.stdout + done.stderr)
    assert_well_formed(lines, "svc")
    inside, outside = lines[:3], lines[3:]
    assert inside[1]["event"] == "a library's record with args"
    for line in inside:
        assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert line["event_id"] == "e-1" and line["reference"] == "moniepoint:MNP-1"
    assert [line["event"] for line in outside] == ["after", "after too"]
    assert not any({"trace_id", "event_id", "reference"} & set(line) for line in outside)


_REDIRECTED = textwrap.dedent(
    """
    from mode.utils.logging import redirect_stdouts
    from bridge.logs import configure_logging, get_logger

    configure_logging("svc", "INFO")
    with redirect_stdouts():  # what faust's worker does once it runs
        get_logger("svc").info("ours")
        print("a stray print")
    """
)


def test_our_lines_bypass_fausts_stdout_redirect_and_a_print_becomes_a_record() -> None:
    done = run_code(_REDIRECTED)
    ours, stray = json_lines(done.stdout + done.stderr)
    assert ours["event"] == "ours" and "logger" not in ours  # not wrapped in another line
    assert stray["event"] == "a stray print" and stray["logger"] == "mode.redirect"


_IN_A_LOOP = textwrap.dedent(
    """
    import asyncio, logging
    from bridge.logs import configure_logging, get_logger

    configure_logging("svc", "INFO")
    log = get_logger("svc")

    async def worker(number: int) -> None:
        for step in range(50):
            log.info("step", worker=number, step=step)
            if step == 25:
                logging.getLogger("aiokafka").warning("between %s", number)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker(number) for number in range(20)))
        log.info("last in the loop")  # the loop ends in the iteration that wrote it

    asyncio.run(main())
    log.info("after the loop")
    asyncio.run(main())  # exits with the last line still in the buffer
    """
)


def test_lines_batched_inside_a_loop_are_all_written_in_order_by_a_normal_exit() -> None:
    done = run_code(_IN_A_LOOP)
    assert done.stderr == ""
    lines = json_lines(done.stdout)
    assert_well_formed(lines, "svc")
    once = 20 * 50 + 20 + 1
    assert len(lines) == 2 * once + 1
    assert lines[once - 1]["event"] == lines[-1]["event"] == "last in the loop"
    assert lines[once]["event"] == "after the loop"
    for run in (lines[:once], lines[once + 1 :]):
        steps = [(line["worker"], line["step"]) for line in run if line["event"] == "step"]
        # gather starts the workers in order and each takes one step per iteration.
        assert steps == [(number, step) for step in range(50) for number in range(20)]
        between = [i for i, line in enumerate(run) if line.get("logger") == "aiokafka"]
        assert [run[i]["event"] for i in between] == [f"between {n}" for n in range(20)]
        # Each library record right after its worker's step 25 line.
        assert [(run[i - 1]["worker"], run[i - 1]["step"]) for i in between] == [
            (n, 25) for n in range(20)
        ]
