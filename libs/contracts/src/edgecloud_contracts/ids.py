"""The grammar of ids the cloud hands a node.

A node turns these ids into names of its own: directories and files under its state
directory (a deployment's work, a command's upload, a container's ``/app`` disk and its
mount point, a migration's scratch directory), Docker volume names and Engine API paths,
broker logins and MQTT topics. The node runs as root, and the ids reach it through a relay
it does not control, so an id is one path component by construction:

- a letter or a digit first: never ``.``, ``..``, an empty name or something read as an
  option (``-rf``);
- then letters, digits, ``_``, ``.`` and ``-``: no ``/``, ``\\``, NUL or other control
  characters, no ``%`` (nothing to decode), no spaces, no MQTT wildcards (``+``, ``#``);
- at most 64 characters.

Every id the services make fits: ``str(uuid4())``, ``uuid4().hex``, and the prefixed ids of
tests and tools (``cmd-…``, ``c-…``, ``d-1``). Names of files are not ids: they have their
own grammar (:data:`edgecloud_contracts.artifacts.ArtifactName`), one component too.
"""

from typing import Annotated

from pydantic import Field

IDENTIFIER = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""The grammar without anchors, to compose into other patterns (transfer URLs)."""
IDENTIFIER_PATTERN = rf"^{IDENTIFIER}$"

Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="an id: a letter or digit, then letters, digits, _ . -; at most 64",
    ),
]
"""An id that becomes a name on a node (see the module's docstring)."""

# Docker's own container-name grammar: it ends up in Engine API paths on the node.
DOCKER_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"

DockerName = Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
