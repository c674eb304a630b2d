"""Logging for every face, set up once per process by `claw_tui.cli.main` for the face that runs.

- the console (`claw`): a rotating file in the user log folder (`console_log_path()`), never the terminal, which
  the console owns; Python warnings go to the file too.
- `claw serve`: one logfmt line per record on stderr (level, logger, request id, message; a traceback stays in its
  record's line). Under systemd, whose journal stamps each line itself, no timestamp but the syslog priority prefix
  (`<3>`) that journald reads as the line's level.
- every other face: warnings on stderr.

Each `-v` lowers the level one step from the face's own (WARNING for the one-shot faces, INFO for the console's
file and `claw serve`) down to DEBUG.

The gateway sets `REQUEST_ID` while it handles a metered request; claw's handlers stamp it on every record logged in
that request's task, so a `log.exception` deep in the pipeline names its request. Setting a ContextVar costs well
under a microsecond and nothing is formatted unless a record passes the level.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TextIO

import platformdirs

REQUEST_ID: ContextVar[str | None] = ContextVar("claw_request_id", default=None)

CONSOLE_LOG_NAME = "console.log"
CONSOLE_LOG_MAX_BYTES = 5_000_000
CONSOLE_LOG_BACKUPS = 3
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
FACE_BASE_LEVEL = {"console": logging.INFO, "serve": logging.INFO}
QUIET_UNTIL_VV = ("uvicorn.error",)  # "Started server process" / "Shutting down" once per server, twice with --demo

_installed: list[logging.Handler] = []  # the handler claw put on the root logger (one at a time)


def level_for(verbosity: int, base: int = logging.WARNING) -> int:
    """One step down from `base` per -v, never below DEBUG."""
    return max(logging.DEBUG, base - 10 * max(0, verbosity))


def log_folder() -> Path:
    """The user log folder (`$XDG_STATE_HOME/claw/log` on Linux)."""
    return platformdirs.user_log_path("claw", appauthor=False)


def console_log_path() -> Path:
    return log_folder() / CONSOLE_LOG_NAME


def console_log_file() -> Path | None:
    """The file the console is writing its log to now, or None when this process writes none."""
    for handler in _installed:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def console_log_status() -> tuple[str, str]:
    """("pass" | "warn", detail) for `claw doctor`: can the console write its log file?"""
    path = console_log_path()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK):
        return "pass", str(path)
    return "warn", f"{path} cannot be written: the console will keep no log"


class RequestIdFilter(logging.Filter):
    """Stamps `record.request_id` (from `extra=` or else the request being handled) and the text tag for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=claw.serve request_id=… msg="…"`: one line per record, newlines escaped."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, str]] = []
        if not self.journald:
            stamp = datetime.fromtimestamp(record.created).astimezone()
            fields.append(("ts", stamp.isoformat(timespec="milliseconds")))
        fields += [("level", record.levelname.lower()), ("logger", record.name)]
        request_id = getattr(record, "request_id", None)
        if request_id:
            fields.append(("request_id", str(request_id)))
        fields.append(("msg", record.getMessage()))
        if record.exc_info:
            fields.append(("exc", self.formatException(record.exc_info)))
        if record.stack_info:
            fields.append(("stack", self.formatStack(record.stack_info)))
        line = " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields)
        return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}" if self.journald else line


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=False)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time of each record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM to the device:inode of the journal stream it connected stdout/stderr to."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def configure(face: str, verbosity: int) -> None:
    """Set up logging for `face` ("console", "serve" or any other subcommand); calling it again replaces it."""
    level = level_for(verbosity, FACE_BASE_LEVEL.get(face, logging.WARNING))
    if face == "console":
        handler = console_handler()
    else:
        handler = StderrHandler()
        if face == "serve":
            handler.setFormatter(LogfmtFormatter(journald=stderr_is_journal()))
        else:
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    install(handler, level)
    logging.captureWarnings(face == "console")  # a warning printed on the terminal would tear the console's screen
    for name in QUIET_UNTIL_VV:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity >= 2 else logging.WARNING)


def console_handler() -> logging.Handler:
    """The rotating file, or a NullHandler when the folder cannot be written (the console runs all the same)."""
    path = console_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=CONSOLE_LOG_MAX_BYTES, backupCount=CONSOLE_LOG_BACKUPS, encoding="utf-8"
        )
    except OSError:
        return logging.NullHandler()
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def install(handler: logging.Handler, level: int) -> None:
    uninstall()
    root = logging.getLogger()
    handler.addFilter(RequestIdFilter())
    _installed[:] = [handler]
    root.addHandler(handler)
    root.setLevel(level)


def uninstall() -> None:
    """Take claw's handler off the root logger again (for a process that hosts more than one face, like a test run)."""
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed.clear()
    logging.captureWarnings(False)
