"""Logging set-up for `python -m service`: uvicorn's and the service's loggers, one format, one level."""

from __future__ import annotations

from typing import Any

from service.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(settings: Settings) -> dict[str, Any]:
    """A logging.config.dictConfig dictionary (uvicorn.Config(log_config=...) applies it before serving)."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"text": {"format": TEXT_FORMAT}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "text", "stream": "ext://sys.stderr"}},
        "loggers": {
            "": {"handlers": ["default"], "level": level},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": level},
        },
    }
