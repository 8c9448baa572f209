"""structlog setup: readable console on a terminal, one JSON object per line otherwise.
Every string in every event passes through the secret redactor."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from syncd.config import redact

# One line per course: on a terminal they are debug (the progress bar counts courses);
# in JSON they stay info, for machines.
PER_COURSE_EVENTS = frozenset(
    {"course synced", "course skipped", "course planned (nothing written)"}
)


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: while the progress bar is live,
    rich puts a proxy there that prints each line above the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _per_course_at_debug(level: str) -> Any:
    def processor(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if method == "info" and event.get("event") in PER_COURSE_EVENTS and level != "debug":
            raise structlog.DropEvent
        return event

    return processor


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        if not self.secrets:
            return event
        for key, value in list(event.items()):
            event[key] = self._scrub(value)
        return event

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, BaseException):
            return redact(str(value), self.secrets)
        return value


def configure(
    *,
    fmt: str = "auto",
    level: str = "info",
    secrets: list[str] | None = None,
    stream: TextIO | None = None,
) -> None:
    out: Any = stream or _CurrentStderr()
    tty = (stream or sys.stderr).isatty()
    console = fmt == "console" or (fmt == "auto" and tty)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=tty)
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    quieter = [_per_course_at_debug(level.lower())] if console and tty else []
    structlog.configure(
        processors=[
            *quieter,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets or []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (pgserver, psycopg_pool, watchdog) log through the standard library:
    # their warnings go through structlog too, so every line has one format and is redacted.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ToStructlog):
            root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(logging.WARNING)


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(
                record.levelno, "library log", library=record.name, message=record.getMessage()
            )
        except Exception:  # a log line must never break the caller
            self.handleError(record)


def get(name: str = "syncd") -> Any:
    return structlog.get_logger(name)
