"""Structured logging on top of the standard library.

An event is a dotted name plus key-value context; the correlation id of the current request is added
automatically::

    log = get_logger(__name__)
    log.info("erp.timebill.posted", run_id=run.id, entry=entry_id)

renders (``log_format=json``) as one JSON object per line::

    {"ts": "...", "level": "info", "event": "erp.timebill.posted", "logger": "...",
     "correlation_id": "...", "run_id": "...", "entry": "..."}

Nothing here logs headers; URLs pass through ``sanitize_url`` so query-string secrets never reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.correlation import current_correlation_id

# Attribute names of a LogRecord that are not context of the event.
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}
_SECRET_PARAMS: Final = re.compile(
    r"(token|secret|password|passwd|pwd|key|signature|sig|auth|code|session|credential)", re.IGNORECASE
)
_URL_IN_TEXT: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
REDACTED: Final = "REDACTED"


def sanitize_url(url: str) -> str:
    """Drop the password of ``user:password@`` and the values of secret-looking query parameters.

    >>> sanitize_url("https://u:pw@api.example.com/x?access_token=abc&page=2")
    'https://u:REDACTED@api.example.com/x?access_token=REDACTED&page=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(name, REDACTED if _SECRET_PARAMS.search(name) else value) for name, value in pairs], safe="/:"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Sanitise every URL inside free text, e.g. an exception message quoting the URL it called."""
    return _URL_IN_TEXT.sub(lambda match: sanitize_url(match.group(0)), text)


class EventLogger:
    """A thin wrapper over ``logging.Logger`` that takes the context as keyword arguments."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, event: str, /, *, exc_info: bool = False, **context: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        correlation_id = context.pop("correlation_id", None) or current_correlation_id()
        extra = {"event_context": context, "correlation_id": correlation_id}
        self.logger.log(level, event, exc_info=exc_info, extra=extra, stacklevel=3)

    def debug(self, event: str, /, *, exc_info: bool = False, **context: Any) -> None:
        self.log(logging.DEBUG, event, exc_info=exc_info, **context)

    def info(self, event: str, /, *, exc_info: bool = False, **context: Any) -> None:
        self.log(logging.INFO, event, exc_info=exc_info, **context)

    def warning(self, event: str, /, *, exc_info: bool = False, **context: Any) -> None:
        self.log(logging.WARNING, event, exc_info=exc_info, **context)

    def error(self, event: str, /, *, exc_info: bool = False, **context: Any) -> None:
        self.log(logging.ERROR, event, exc_info=exc_info, **context)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The key-value context of a record: ``EventLogger`` context plus any plain ``extra=`` keys."""
    context: dict[str, Any] = dict(getattr(record, "event_context", None) or {})
    for key, value in vars(record).items():
        if key not in _RECORD_ATTRS and key not in {"event_context", "correlation_id"}:
            context.setdefault(key, value)
    return context


def _correlation_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "correlation_id", None)
    return value if isinstance(value, str) else current_correlation_id()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        correlation_id = _correlation_id(record)
        if correlation_id:
            payload["correlation_id"] = correlation_id
        for key, value in record_context(record).items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01 INFO  gateway.request.finished method=GET path=/healthz status=200 [cid]``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        context = " ".join(f"{key}={value}" for key, value in record_context(record).items())
        line = f"{ts} {record.levelname:<7} {record.getMessage()}"
        if context:
            line += f" {context}"
        correlation_id = _correlation_id(record)
        if correlation_id:
            line += f" [{correlation_id}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_HANDLER_MARK: Final = "_p2c_handler"


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Install one stderr handler on the root logger (idempotent: a second call replaces it)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # Our own request log replaces uvicorn's access log; its error log flows through our handler.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request URL at INFO, query string included (SOQL, sometimes tokens); alembic
    # logs its context on every readiness probe.
    for name in ("httpx", "httpcore", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
