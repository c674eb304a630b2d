"""Gateway policies as small units: token auth, rate limits, the in-flight admission queue, VRAM admission."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from claw_tui.gateway.errors import GatewayError, retry_after

# With admin tokens configured, these need one: model management, and changing the box for everyone (switching
# the governor, which locks GPU clocks and unloads models). Reading the governor's state needs any token.
ADMIN_PATHS = frozenset({"/api/create", "/api/delete", "/api/pull", "/api/copy"})
ADMIN_WRITES = frozenset({"/claw/v1/governor"})
READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/"})  # liveness probes answer without a token ("Ollama is running" tells nothing)


# ---- listening --------------------------------------------------------------------------------------------------


class UnsafeListenError(OSError):
    """Listening beyond loopback without a token would hand the GPUs to anyone who can reach the port."""


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen_is_safe(host: str, port: int, tokens: Iterable[str]) -> None:
    if not is_loopback_host(host) and not any(tokens):
        raise UnsafeListenError(
            f"refusing to listen on {host}:{port} without a token: set [gateway] tokens in the config "
            "(clients then send 'Authorization: Bearer <token>'), or listen on 127.0.0.1"
        )


# ---- authentication ---------------------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Bearer tokens (header `Authorization: Bearer …` or `?token=…`), compared in constant time.

    Comparing SHA-256 digests keeps the time independent of where the tokens differ and of their lengths; every
    known token is compared, so the time does not tell which one matched either.
    """

    def __init__(self, tokens: Iterable[str] = (), admin_tokens: Iterable[str] = ()) -> None:
        self._user = [_digest(t) for t in tokens if t]
        self._admin = [_digest(t) for t in admin_tokens if t]
        self.enabled = bool(self._user or self._admin)
        self.admin_required = bool(self._admin)  # without admin tokens, any token may manage models

    def add_token(self, token: str, *, admin: bool = False) -> None:
        """Accept one more token (claw's own clients); it does not change who may call the admin endpoints."""
        (self._admin if admin else self._user).append(_digest(token))
        self.enabled = True

    def role_of(self, token: str | None) -> str | None:
        """ "admin", "user", or None for a missing or unknown token."""
        if not token:
            return None
        digest = _digest(token)
        admin = _matches_any(digest, self._admin)
        user = _matches_any(digest, self._user)
        if admin:
            return "admin"
        return "user" if user else None

    def check(self, path: str, token: str | None, method: str = "GET") -> None:
        """Raise a 401/403 GatewayError unless the token may call `method path`."""
        if not self.enabled or path in OPEN_PATHS:
            return
        role = self.role_of(token)
        if role is None:
            message = "missing bearer token" if not token else "invalid bearer token"
            raise GatewayError(
                401,
                f"{message}: send 'Authorization: Bearer <token>' or ?token=<token>",
                headers={"WWW-Authenticate": 'Bearer realm="claw"'},
            )
        if not self.admin_required or role == "admin":
            return
        if path in ADMIN_PATHS or (path in ADMIN_WRITES and method not in READ_METHODS):
            raise GatewayError(403, f"{method} {path} needs an admin token")


def _matches_any(digest: bytes, digests: list[bytes]) -> bool:
    found = False
    for known in digests:
        found |= hmac.compare_digest(digest, known)
    return found


def bearer_token(headers: Iterable[tuple[bytes, bytes]], query_string: bytes) -> str | None:
    for key, value in headers:
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    if query_string and b"token=" in query_string:
        from urllib.parse import parse_qs

        values = parse_qs(query_string.decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


# ---- rate limits ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TokenBucket:
    """`capacity` requests at once, refilled at `rate_per_s`."""

    rate_per_s: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate_per_s: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate_per_s, capacity, capacity, now)

    def take(self, now: float) -> float:
        """Take one token; returns 0 on success, else the seconds until one is available (nothing is taken)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


class RateLimiter:
    """One token bucket per client key (its bearer token, else its address); the oldest idle keys are forgotten."""

    def __init__(
        self, rpm: int, burst: int = 0, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.enabled = rpm > 0
        self.rate_per_s = rpm / 60.0
        self.capacity = float(max(1, burst))
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> None:
        """Raise 429 with Retry-After when `key` is over its rate."""
        if not self.enabled:
            return
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate_per_s, self.capacity, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait > 0:
            raise GatewayError(
                429,
                f"rate limit exceeded ({self.rate_per_s * 60:g} requests per minute); retry in {wait:.1f}s",
                headers=retry_after(wait),
            )


# ---- admission: max in-flight per backend with a bounded wait queue -----------------------------------------------


class AdmissionQueue:
    """At most `limit` requests in flight; up to `queue_size` more wait (first come, first served) for at most
    `timeout_s`; beyond that, or past the wait, a 503 with Retry-After."""

    def __init__(self, limit: int, queue_size: int, timeout_s: float, *, name: str = "") -> None:
        self.limit = max(1, limit)
        self.queue_size = max(0, queue_size)
        self.timeout_s = timeout_s
        self.name = name
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._service_s = 1.0  # moving average of how long a slot is held, for Retry-After
        self.rejected = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        if len(self._waiters) >= self.queue_size:
            self.rejected += 1
            raise self._busy(f"{self.active} requests in flight and {len(self._waiters)} waiting")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout_s):
                await waiter
        except TimeoutError:
            self._forget(waiter)
            self.rejected += 1
            raise self._busy(f"no free slot within {self.timeout_s:g}s") from None
        except asyncio.CancelledError:
            self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self.release()  # the slot was handed over just as the wait ended: pass it on
        else:
            waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def release(self, held_s: float | None = None) -> None:
        if held_s is not None:
            self._service_s = 0.9 * self._service_s + 0.1 * held_s
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the next waiter: `active` stays the same
                return
        self.active = max(0, self.active - 1)

    def retry_after_s(self) -> float:
        return max(1.0, self._service_s * (len(self._waiters) + 1) / self.limit)

    def _busy(self, detail: str) -> GatewayError:
        where = f"backend '{self.name}'" if self.name else "the backend"
        return GatewayError(
            503, f"{where} is busy ({detail}); retry later", headers=retry_after(self.retry_after_s()), retryable=True
        )


# ---- admission on GPU memory pressure --------------------------------------------------------------------------


class VramGate:
    """Holds new requests while a GPU's memory use is above `threshold_pct`, then answers 503 + Retry-After.

    `vram_pct(gpu)` reads the latest telemetry (None when unknown: never holds a request back).
    """

    def __init__(
        self,
        threshold_pct: float,
        vram_pct: Callable[[int | None], float | None],
        *,
        timeout_s: float,
        poll_s: float = 0.1,
        max_waiting: int = 64,
    ) -> None:
        self.threshold_pct = threshold_pct
        self.vram_pct = vram_pct
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.max_waiting = max_waiting
        self.waiting = 0
        self.enabled = threshold_pct > 0

    def over(self, gpu: int | None) -> float | None:
        if not self.enabled:
            return None
        pct = self.vram_pct(gpu)
        return pct if pct is not None and pct > self.threshold_pct else None

    async def wait(self, gpu: int | None) -> None:
        pct = self.over(gpu)
        if pct is None:
            return
        if self.waiting >= self.max_waiting:
            raise self._busy(pct)
        self.waiting += 1
        try:
            deadline = time.monotonic() + self.timeout_s
            while pct is not None:
                if time.monotonic() >= deadline:
                    raise self._busy(pct)
                await asyncio.sleep(self.poll_s)
                pct = self.over(gpu)
        finally:
            self.waiting -= 1

    def _busy(self, pct: float) -> GatewayError:
        return GatewayError(
            503,
            f"GPU memory pressure: {pct:.0f}% of VRAM in use (admission limit {self.threshold_pct:g}%); retry later",
            headers=retry_after(max(1.0, self.timeout_s / 4)),
            retryable=True,
        )
