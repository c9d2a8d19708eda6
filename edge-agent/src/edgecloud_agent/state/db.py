"""The node's own small sqlite3 databases, in the state directory."""

import sqlite3
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection: every statement is durable when it returns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None)
    # WAL + NORMAL: a commit survives the agent being killed (only a power cut may lose
    # the last one, and a repeated create converges on the container anyway).
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db
