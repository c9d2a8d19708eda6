"""Names from the cloud joined to the node's own directories, one component each.

The contracts hold every id the cloud sends to one grammar (:mod:`edgecloud_contracts.ids`);
this is the second lock, at the join itself, for whatever reaches it another way (a state
file written by an older agent, a model built without validation, a grammar loosened by
mistake). A name that is not exactly one path component is refused before any directory
is made, opened or removed: the agent runs as root, and ``rmtree(state/deployments/../..)``
would take a neighbour's files with it.
"""

from pathlib import Path

from ..runtime.errors import UnsafeName


def component(name: str) -> str:
    """``name`` if it is one path component: not empty, not ``.`` or ``..``, no ``/``,
    ``\\`` or NUL."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise UnsafeName(f"not a single path component: {name!r}"[:200])
    return name


def child(directory: Path, name: str, *, suffix: str = "") -> Path:
    """``directory / (name + suffix)``, refusing a ``name`` that is not one component."""
    return directory / f"{component(name)}{suffix}"
