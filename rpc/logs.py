"""The process's logging, set once by ``vision-pipeline``: one handler on the root logger
(text, or JSON through python-json-logger with ``LOG_FORMAT=json``) that every logger
reaches, uvicorn's included (``serve`` hands uvicorn no logging config of its own).

Other libraries' chatter (google-genai's "AFC is enabled…", an httpx line per provider call)
stays at WARNING unless ``LOG_LEVEL=debug``."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from rpc.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log a line per call at INFO (or per connection at DEBUG).
CHATTY = ("google_genai", "google.genai", "httpx", "httpcore", "openai", "urllib3", "asyncpg",
          "aiosqlite", "PIL", "multipart", "hpack", "h11", "websockets", "alembic")  # fmt: skip
ACCESS_LOGGER = "rpc.access"


class OurHandler(logging.StreamHandler[TextIO]):
    """The handler `setup_logging` installs, told apart from any other (a test's, pytest's)
    so that setting up again replaces only it; ``rpc.access_log`` writes its batches of
    access lines straight to it (``write_lines``) when it is the only handler."""

    def __init__(self, stream: TextIO, log_format: str) -> None:
        super().__init__(stream)
        self.log_format = log_format
        self.setFormatter(formatter(log_format))

    def write_lines(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # (always set by Handler.__init__)
            self.stream.write(text)
            self.flush()


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, and the record's
    extra fields (an access line's method, target, status, duration_ms; a finished job's
    job_id, status, attempts, duration_ms, cost_usd)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data.pop("color_message", None)  # uvicorn's copy of the message with ANSI colours
        return log_data


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, its date made once per second: with the caller lookup skipped
    (``setup_logging``), a finished job's report went from 13.5 to 9.3 µs (bench/RESULTS.md
    §14)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"  # default_msec_format


def formatter(log_format: str) -> logging.Formatter:
    return JsonLineFormatter() if log_format == "json" else TextFormatter()


def level_of(name: str) -> int:
    """LOG_LEVEL as a logging level (Settings has checked it is one)."""
    return logging.getLevelNamesMapping()[name.strip().upper()]


def setup_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Configure the root logger from LOG_LEVEL and LOG_FORMAT, quiet the chatty libraries
    unless LOG_LEVEL=debug, and turn the access log on or off (ACCESS_LOG)."""
    level = level_of(settings.log_level)
    # No line shows the thread or process names: not looking them up for each record saves
    # a sixth of an access line's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Nor the caller's file and line: no format prints them, and finding them walks the
    # stack for each record (see TextFormatter for what the two together saved).
    logging._srcfile = None
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, OurHandler)]:
        root.removeHandler(old)
    handler = OurHandler(stream if stream is not None else sys.stderr, settings.log_format)
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )
    # The access log has its own switch: on, its lines are written whatever LOG_LEVEL says
    # (LOG_LEVEL=warning quiets the application, not the record of requests). Off: above
    # CRITICAL, so a request's isEnabledFor check fails before any record is made.
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)
