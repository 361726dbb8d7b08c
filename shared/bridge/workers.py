"""Several uvicorn workers on one port, each accepting on a listening socket of its own.

uvicorn's supervisor hands every worker the same listening socket. A burst of connections
opened together then goes mostly to whichever worker wakes first (asyncio accepts up to its
backlog per wake-up), and two workers answered 500 simultaneous webhooks no sooner than one.
With SO_REUSEPORT each worker listens on a socket of its own, bound to the same address, and
the kernel spreads new connections over them by their addresses.

Restarts, health checks and signals stay uvicorn's (its `Multiprocess` supervisor): this only
changes which socket a worker gets. The supervisor keeps no copy of a worker's socket (else a
dead worker's socket would still listen, and the connections the kernel gives it would wait
for nobody). What a dying worker had accepted or queued is reset; the provider retries, and
nothing unacknowledged was promised.
"""

from __future__ import annotations

import socket
from typing import Any

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` with SO_REUSEPORT; uvicorn's worker listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ReusePortWorkers(Multiprocess):
    """uvicorn's supervisor, where each worker it starts (at first, or to replace one that
    died or is restarted) gets a new SO_REUSEPORT socket instead of the shared one."""

    def __init__(self, config: Config) -> None:
        if not config.port:
            # Each socket would get a port of its own: the workers would not share one.
            raise ValueError("workers on SO_REUSEPORT sockets need a fixed port, not 0")
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        # Read by the supervisor once for every worker process it creates.
        sock = reuse_port_socket(self.config.host, self.config.port)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, _: list[socket.socket]) -> None:
        pass  # the supervisor's shared socket: there is none

    def _close_handed(self) -> None:
        # The started worker received a duplicate (multiprocessing passes the descriptor):
        # closing the supervisor's copy leaves the worker the socket's only holder.
        for sock in self._handed:
            sock.close()
        self._handed.clear()

    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()

    def restart_all(self) -> None:
        super().restart_all()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()


def run_workers(app: str, host: str, port: int, **uvicorn_options: Any) -> None:
    """`app` (an import string) served by `uvicorn_options["workers"]` processes on
    `host`:`port`, each on its own SO_REUSEPORT socket, until SIGINT/SIGTERM."""
    ReusePortWorkers(Config(app, host=host, port=port, **uvicorn_options)).run()
