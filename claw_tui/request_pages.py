"""Pages of `/claw/v1/requests`: newest first, `limit` at most MAX_LIMIT, `before=<id>` for the next page, filters.

A page comes from the ledger's in-memory ring (the newest `[store] memory_records` requests) while it can; a page that
reaches past the ring's oldest record is read from the session store. Either way the work is done off the gateway's
event loop by the caller (a thread), and costs what the page holds, never what the session has recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from claw_tui.records import STATUSES, RequestRecord

N = TypeVar("N", int, float)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class QueryError(ValueError):
    """A query parameter that makes no sense (answered 400)."""


@dataclass(frozen=True)
class RequestQuery:
    limit: int = DEFAULT_LIMIT
    before: str | None = None  # the id of the last record of the previous page
    model: str | None = None
    agent: str | None = None
    status: str | None = None
    since: float | None = None  # arrival at or after (seconds since the epoch)

    @classmethod
    def parse(cls, get: Callable[[str], str | None]) -> RequestQuery:
        limit = _number(get, "limit", int)
        if limit is not None and limit < 0:
            raise QueryError("limit must be 0 or more")
        status = get("status") or None
        if status is not None and status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)}")
        return cls(
            limit=min(MAX_LIMIT, DEFAULT_LIMIT if limit is None else limit),
            before=get("before") or None,
            model=get("model") or None,
            agent=get("agent") or None,
            status=status,
            since=_number(get, "since", float),
        )

    def matches(self, record: RequestRecord) -> bool:
        return (
            (self.model is None or record.model == self.model)
            and (self.agent is None or record.agent == self.agent)
            and (self.status is None or record.status == self.status)
            and (self.since is None or record.t_arrival >= self.since)
        )


def _number(get: Callable[[str], str | None], name: str, kind: Callable[[str], N]) -> N | None:
    text = get(name)
    if text is None or text == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise QueryError(f"{name} must be a number") from None


# (query, the oldest record in memory or None): the stored records older than it (or than `query.before`), newest
# first, at most `query.limit`.
StoreReader = Callable[[RequestQuery, "RequestRecord | None"], list[RequestRecord]]


def page(
    memory: Sequence[RequestRecord], query: RequestQuery, read_store: StoreReader | None, *, ring_full: bool = True
) -> dict[str, Any]:
    """One page as the JSON object the endpoint answers: `requests` (newest first) and `next_before`.

    `memory` is the ledger's ring, oldest first; `ring_full` says older requests may have left it for the store.
    """
    found: list[RequestRecord] = []
    start = len(memory)
    if query.before is not None:
        start = next((i for i in range(len(memory) - 1, -1, -1) if memory[i].id == query.before), -1)
    reached_end = start < 0
    if not reached_end:
        for i in range(start - 1, -1, -1):
            record = memory[i]
            if query.since is not None and record.t_arrival < query.since:
                reached_end = True  # older records are older still
                break
            if query.matches(record):
                found.append(record)
                if len(found) >= query.limit:
                    break
        else:
            reached_end = True
    in_store = start < 0 or (reached_end and ring_full)
    if len(found) < query.limit and in_store and read_store is not None:
        anchor = memory[0] if (memory and start >= 0) else None
        found += read_store(query, anchor)[: query.limit - len(found)]
    more = len(found) >= query.limit and query.limit > 0
    return {"requests": [r.to_json() for r in found], "next_before": found[-1].id if more else None}


def page_bytes(
    memory: Sequence[RequestRecord], query: RequestQuery, read_store: StoreReader | None, *, ring_full: bool = True
) -> bytes:
    body = page(memory, query, read_store, ring_full=ring_full)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
