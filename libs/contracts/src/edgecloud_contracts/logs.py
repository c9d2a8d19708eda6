"""The JSON log line every edgecloud process writes (services and agents alike), so that
one tool reads them all: ``ts``, ``level``, ``logger``, ``msg``, then any structured
fields (``correlation_id``, ids passed with ``extra=``), then ``exc`` for a traceback.

Every line, plain or JSON, passes :func:`redact` last: a secret that reaches a message
anyway (a library's exception quoting a URL with its transfer grant, say) is masked."""

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


REDACTED = "<redacted>"
_SECRETS = (
    # A secret as a query parameter or keyword: grant=..., enrolment_token=..., ticket=...
    (
        re.compile(
            r"(?i)\b((?:[a-z]+_)?(?:grant|token|ticket|password|secret))=(?!<redacted>)[^&\s\"',;)]+"
        ),
        rf"\1={REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer) +[A-Za-z0-9._~+/-]+=*"), rf"\1 {REDACTED}"),
    # Our tokens (bearer, enrolment, invitation) and signed JWTs (identities, grants).
    (re.compile(r"\bec[ei]?_[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), REDACTED),
)


def redact(text: str) -> str:
    """``text`` with anything shaped like one of our secrets masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks secrets in the whole line (traceback included)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def line_formatter(*, json_lines: bool) -> logging.Formatter:
    """The formatter of every edgecloud process's log lines."""
    if json_lines:
        return RedactingFormatter(JsonFormatter())
    plain = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return RedactingFormatter(plain)


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
    of every logger pass through it) and secrets masked; autobahn is chatty at INFO."""
    from .correlation import RequestIdFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(line_formatter(json_lines=json_lines))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("autobahn").setLevel(logging.WARNING)
