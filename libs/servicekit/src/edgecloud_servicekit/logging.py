"""Process-wide logging set-up, done once by each ``__main__``."""

import logging

from edgecloud_contracts.logs import JsonFormatter, log_to_stderr

__all__ = ["JsonFormatter", "configure_logging"]


def _not_a_refused_websocket(record: logging.LogRecord) -> bool:
    # uvicorn's websockets-sansio protocol logs this error after every WebSocket refused
    # with an HTTP answer (a shell the caller may not open), although the answer was sent.
    return record.getMessage() != "ASGI callable returned without completing handshake."


def configure_logging(*, level: str = "INFO", json_lines: bool = False) -> None:
    log_to_stderr(level=level, json_lines=json_lines)
    # uvicorn's access log is chatty at INFO.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_not_a_refused_websocket)
