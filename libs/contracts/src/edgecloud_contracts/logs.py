"""The JSON log line every edgecloud process writes (services and agents alike), so that
one tool reads them all: ``ts``, ``level``, ``logger``, ``msg``, then any structured
fields (``correlation_id``, ids passed with ``extra=``), then ``exc`` for a traceback."""

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_to_stderr(*, level: str, json_lines: bool) -> None:
    """The process's one log handler (services and agent alike): plain or JSON lines on
    stderr, each with the request id being handled (its filter is on the handler, so records
    of every logger pass through it); autobahn is chatty at INFO."""
    from .correlation import RequestIdFilter

    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("autobahn").setLevel(logging.WARNING)
