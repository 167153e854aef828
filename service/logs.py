"""Logging set-up for `python -m service`: uvicorn's and the service's loggers, one format, one level.

Every line names the request it was written for: service/middleware.py sets `request_id` for each request, and the
handler's RequestIdFilter copies it onto each record (uvicorn's error and access lines included; "-" outside
a request, e.g. start-up or the batch threads). With `json_logs` each line is one JSON object.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from service.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

# Set once per request in the request's own task (each request runs in a task of its own under uvicorn), so
# it needs no reset: the task's context ends with it.
request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record the handler writes. On the handler, not a logger: a logger's filters
    do not see the records its children propagate to it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and exception (the
    traceback as text) when there is one; json.dumps escapes newlines, so a line is always one record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def log_config(settings: Settings) -> dict[str, Any]:
    """A logging.config.dictConfig dictionary (uvicorn.Config(log_config=...) applies it before serving)."""
    level = settings.log_level.upper()
    formatter = "json" if settings.json_logs else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"text": {"format": TEXT_FORMAT}, "json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": formatter, "filters": ["request_id"],
                                 "stream": "ext://sys.stderr"}},
        "loggers": {
            "": {"handlers": ["default"], "level": level},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": level},
        },
    }
