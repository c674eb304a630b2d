"""The service's event bus: numbered events in a ring (for resuming), fanned out to subscribers.

Publishing never blocks and never waits for a subscriber: each subscriber has a bounded queue, and one that falls
behind loses its queue and gets a `resync` event instead (it then re-reads the state). Publishers may be on any
thread (the gateway's loop, the sampler's thread); each subscriber is woken through its own callback, at most once
until it drains.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from claw_tui.console.events import RESYNC, ConsoleEvent

RING_SIZE = 4096
QUEUE_SIZE = 2048


class Subscription:
    def __init__(self, bus: EventBus, wake: Callable[[], None], maxlen: int) -> None:
        self._bus = bus
        self._wake = wake
        self._maxlen = maxlen
        self._queue: deque[ConsoleEvent] = deque()
        self._overflowed: str | None = None
        self._woken = False
        self.closed = False
        self.resyncs = 0

    def _push(self, event: ConsoleEvent) -> bool:
        """Queue the event (under the bus lock); True when the subscriber must be woken."""
        if self._overflowed is None:
            if len(self._queue) >= self._maxlen:
                self._queue.clear()
                self._overflowed = "this reader fell behind"
            else:
                self._queue.append(event)
        if self._woken:
            return False
        self._woken = True
        return True

    def drain(self) -> list[ConsoleEvent]:
        """The events since the last drain, oldest first; after an overflow, a single `resync` event."""
        with self._bus._lock:
            self._woken = False
            if self._overflowed is not None:
                reason, self._overflowed = self._overflowed, None
                self._queue.clear()
                self.resyncs += 1
                return [ConsoleEvent(self._bus.last_id, RESYNC, {"reason": reason})]
            events = list(self._queue)
            self._queue.clear()
        return events

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self, ring_size: int = RING_SIZE, queue_size: int = QUEUE_SIZE) -> None:
        self._lock = threading.Lock()
        self._ring: deque[ConsoleEvent] = deque(maxlen=ring_size)
        self._subscribers: list[Subscription] = []
        self.queue_size = queue_size  # per subscriber: a reader further behind than this gets a resync
        self.last_id = 0

    def publish(self, kind: str, data: dict[str, Any]) -> ConsoleEvent:
        to_wake = []
        with self._lock:
            self.last_id += 1
            event = ConsoleEvent(self.last_id, kind, data)
            self._ring.append(event)
            for subscriber in self._subscribers:
                if subscriber._push(event):
                    to_wake.append(subscriber)
        for subscriber in to_wake:
            try:
                subscriber._wake()
            except Exception:  # a subscriber whose loop is gone must not hurt the publisher
                pass
        return event

    def subscribe(
        self, wake: Callable[[], None], after_id: int | None = None, maxlen: int | None = None
    ) -> Subscription:
        """A new subscriber; with `after_id`, the events after that id are queued first (a resume), or a `resync`
        when they are no longer all in the ring (or the id comes from another run)."""
        subscription = Subscription(self, wake, maxlen or self.queue_size)
        with self._lock:
            if after_id is not None and after_id != self.last_id:
                oldest = self._ring[0].id if self._ring else self.last_id + 1
                if after_id > self.last_id or after_id < oldest - 1:
                    subscription._overflowed = "the events since the last one seen are no longer kept"
                else:
                    subscription._queue.extend(e for e in self._ring if e.id > after_id)
            self._subscribers.append(subscription)
            pending = bool(subscription._queue) or subscription._overflowed is not None
            if pending:
                subscription._woken = True
        if pending:
            wake()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscription.closed = True
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def close(self) -> None:
        """The service is stopping: every subscriber is woken once more and finds itself closed."""
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
            for subscription in subscribers:
                subscription.closed = True
        for subscription in subscribers:
            try:
                subscription._wake()
            except Exception:
                pass

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
