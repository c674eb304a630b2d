"""Run an ASGI app with uvicorn inside an existing asyncio loop, on a socket we bind ourselves.

Binding the socket first gives a clear error when the port is taken (uvicorn would call sys.exit), lets port 0
pick a free port, and `log_config=None` keeps uvicorn from reconfiguring logging under the TUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn


class PortInUseError(OSError):
    pass


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when their proto says TCP, and
    # without it small responses written in two parts wait ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    def install_signal_handlers(self) -> None:  # pragma: no cover - trivial
        return

    @contextlib.contextmanager
    def capture_signals(self):  # uvicorn >= 0.29 name for the same hook
        yield


class AppServer:
    """One ASGI app served on host:port in the running loop; `start()` returns once it accepts connections."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: _QuietServer | None = None
        self._task: asyncio.Task | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        self._socket = bind_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            http="httptools",  # by name: uvicorn's "auto" would fall back to h11 (pure Python) without a word
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name=f"http:{self.port}")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the startup failure
                raise RuntimeError(f"server on {self.url} stopped during startup")
            await asyncio.sleep(0.005)
        return self.url

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # a server that failed is stopped all the same
                pass
        if self._socket is not None:
            self._socket.close()
        self._server = None
