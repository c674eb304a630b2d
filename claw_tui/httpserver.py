"""Run an ASGI app with uvicorn inside an existing asyncio loop, on a socket we bind ourselves.

Binding the socket first gives a clear error when the port is taken (uvicorn would call sys.exit), lets port 0
pick a free port, and `log_config=None` keeps uvicorn from reconfiguring logging under the TUI.

uvicorn's HTTP protocol has no limit on the size of a request's headers, no deadline for sending them (a
connection that sends half a request is held forever) and no cap on open connections. `GuardedHttpProtocol` adds
them, before the application (and so before authentication) sees anything:
- headers larger than `max_header_bytes` get 431 and the connection is closed, as soon as the limit is passed;
- a request line and headers not complete within `header_timeout_s` get 408 (a connection that sent nothing is
  just closed), and so does an idle keep-alive connection after `keep_alive_timeout_s`;
- beyond `max_connections` open connections, the oldest idle one (no request in progress: keep-alive, or still
  sending its headers) is closed to make room; when every connection is busy, the newcomer gets 503. The cap
  stays below the process's open-file limit, so idle connections can never lock real clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from claw_tui.config import GatewayConfig

FD_RESERVE = 64  # descriptors kept for everything else: the store, NVML, logs, backend health checks


class PortInUseError(OSError):
    pass


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 30.0
    max_connections: int = 0  # 0 = automatic: see connection_cap()

    @classmethod
    def from_config(cls, gateway: GatewayConfig) -> ConnectionLimits:
        return cls(
            max_header_bytes=gateway.max_header_bytes,
            header_timeout_s=gateway.header_timeout_s,
            keep_alive_timeout_s=gateway.keep_alive_timeout_s,
            max_connections=gateway.max_connections,
        )

    def connection_cap(self) -> int:
        """The configured cap, never above what the open-file limit allows: each client connection of a proxied
        request also holds one to a backend, so half of what is left after a reserve."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        allowed = max(8, (soft - FD_RESERVE) // 2) if soft != resource.RLIM_INFINITY else 1 << 16
        return min(self.max_connections, allowed) if self.max_connections > 0 else allowed


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


def _plain_response(status: int, reason: str, message: str) -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size and time limits and a cap on open connections."""

    limits = ConnectionLimits()
    cap = 0

    # asyncio hands a stream protocol a Transport; uvicorn narrows the argument the same way (and ignores it too)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened_at = time.monotonic()
        self.head_bytes = 0
        self.reading_head = True  # between requests, or receiving a request line and headers
        self.in_request = False  # headers in, response not yet complete
        self.head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.cap and not self._make_room():
            self._refuse(503, "Service Unavailable", "too many open connections; retry shortly\n")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)
        if self.reading_head and not self.transport.is_closing():
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(431, "Request Header Fields Too Large", f"request headers larger than {limit} bytes\n")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading_head = True
        self.head_bytes = 0
        if self.head_timer is None:  # the next request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.in_request = True
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.in_request = False
        self.reading_head = True
        self.head_bytes = 0
        super().on_response_complete()

    @property
    def idle(self) -> bool:
        """No request in progress: kept alive between requests, or still sending the headers of one."""
        return not self.in_request

    # ---- limits -------------------------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or not self.reading_head:
            return
        if self.head_bytes == 0:  # it never started a request: nothing to answer
            self.transport.close()
            return
        timeout = self.limits.header_timeout_s
        self._refuse(408, "Request Timeout", f"request headers not received within {timeout:g}s\n")

    def _make_room(self) -> bool:
        """Close the oldest idle connection; False when every other connection has a request in progress."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedHttpProtocol) and c.idle]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.opened_at)
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self.reading_head = False
        self._cancel_head_timer()
        self.transport.write(_plain_response(status, reason, message))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class for one server, with its limits."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits, "cap": limits.connection_cap()})


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    def install_signal_handlers(self) -> None:  # pragma: no cover - trivial
        return

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29 name for the same hook
        yield


class AppServer:
    """One ASGI app served on host:port in the running loop; `start()` returns once it accepts connections."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, limits: ConnectionLimits | None = None
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or ConnectionLimits()
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
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
            http=guarded_protocol(self.limits),
            log_config=None,
            access_log=False,
            lifespan="off",
            # annotated int, but uvicorn only hands it to loop.call_later, which takes fractions of a second
            timeout_keep_alive=self.limits.keep_alive_timeout_s,  # type: ignore[arg-type]
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
