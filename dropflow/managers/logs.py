"""Daemon logs that people and log shippers can use: one line per event, sessions' lives told in full.

Theory of operation
-------------------
:func:`configure` sets up the daemon's logging once, in the worker process: one handler on standard error
with either :class:`TextFormatter` -- ``2026-05-01T12:00:00.123+00:00 INFO dropflow.sessions: session s1
FINISHED: 84 drops in 12.3 s session=s1 event=finished state=FINISHED drops=84`` -- where the message reads
as a sentence and the ``key=value`` fields after it are what ``grep session=s1`` finds, or
:class:`JsonFormatter`, one JSON object per line with the same fields, for log shippers. Timestamps are wall
clock, ISO 8601 with milliseconds and the offset. Every record is one line: line breaks inside a message
(a traceback, an app's error) are escaped in text and kept inside the string in JSON. The HTTP client's
per-request lines are turned down to warnings: an island's log is about sessions, not its own requests.

:func:`session_event` is how the managers tell a session's life -- created, deployed, started, ended with
its state, drop counts and first failure -- and each lost node, on the ``dropflow.sessions`` logger, with
the session id (and drop ids, node names) as fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "configure", "first_failure", "session_event"]

FORMATS = ("text", "json")
SESSIONS = logging.getLogger("dropflow.sessions")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "fields"}


def _timestamp(created: float) -> str:
    local = time.localtime(created)
    offset = time.strftime("%z", local)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int(created % 1 * 1000):03d}{offset[:3]}:{offset[3:]}"
    )


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in vars(record).items():  # extra={...} given directly
        if key not in _STANDARD and not key.startswith("_"):
            fields.setdefault(key, value)
    return fields


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\n\r\t'):
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            message += "\n" + self.formatStack(record.stack_info)
        message = message.replace("\\", "\\\\").replace("\n", "\\n")
        fields = " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items() if v is not None)
        line = f"{_timestamp(record.created)} {record.levelname} {record.name}: {message}"
        return f"{line} {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        for key, value in _fields(record).items():
            body.setdefault(key, value)
        return json.dumps(body, default=str)


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(level: str = "info", fmt: str = "text", also: tuple[str, ...] = ("gunicorn.error",)) -> None:
    """The daemon's logging: one handler on standard error with the chosen format (replacing any the root
    logger had), the same format for ``also``'s own handlers, and the HTTP client's request lines off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in also:
        for h in logging.getLogger(name).handlers:
            h.setFormatter(formatter(fmt))
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def first_failure(failures: list[dict[str, Any]]) -> str | None:
    """``uid: first line of its message`` of a summary's first failure (None if none)."""
    if not failures:
        return None
    f = failures[0]
    head = (f.get("message") or "").strip().splitlines()
    where = f" on {f['node']}" if f.get("node") else ""
    return f"{f.get('uid')}{where}: {head[0] if head else ''}"


def session_event(
    event: str, session_id: str, message: str, level: int = logging.INFO, **fields: Any
) -> None:
    """Log one event of a session's life on ``dropflow.sessions``, with its id and ``fields``."""
    if SESSIONS.isEnabledFor(level):
        SESSIONS.log(level, message, extra={"fields": {"session": session_id, "event": event, **fields}})
