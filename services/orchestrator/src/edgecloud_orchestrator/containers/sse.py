"""Server-sent events that carry text from a container: one line of text is one field.

The event-stream grammar ends a field at CR, LF or CRLF alike, so a log line holding a bare
``\\r`` (a progress bar, or a hostile program) would start fields of its own: ``\\rid: x``
resets the client's last event id, ``\\r\\r`` ends the event early and what follows is read
as another (``event: end``, a forged line). Each piece between line breaks is therefore sent
as a ``log`` event of its own, and NUL, which some clients cut strings at, becomes U+FFFD.
"""

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def pieces(text: str) -> list[str]:
    """``text`` cut at every line break the event-stream grammar knows, NUL replaced."""
    return _LINE_BREAK.split(text.replace("\0", "\ufffd"))


def log_events(text: str) -> str:
    """``text`` (one log line as the node gave it) as ``log`` events, one per piece."""
    return "".join(f"event: log\ndata: {piece}\n\n" for piece in pieces(text))


def event(kind: str, text: str = "") -> str:
    """One event of ``kind`` (ours, not a container's) whose text is one ``data`` field."""
    return f"event: {kind}\ndata: {' '.join(pieces(text))}\n\n"
