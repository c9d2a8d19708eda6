"""Strings a compromised relay would put where the cloud sends an id a node turns into a
path (edgecloud_contracts.ids): each must be refused."""

HOSTILE_IDS = [
    "../",
    "..",
    ".",
    "/abs",
    "a/../../b",
    "../../neighbour",  # from a directory of the node's state: the neighbour's files
    "a\x00b",
    "%2e%2e",
    "%2e%2e%2fneighbour",
    "a\\..\\b",
    "",
    "-rf",
    "a b",
    "a\n",
    "edgecloud/#",
    "x" * 65,
]
GRANT = "eyJhbGciOiJIUzI1NiJ9.eyJhcnQiOiJhIn0.c2lnbmF0dXJl"
"""The shape of a transfer grant (a JWT), signed by no one."""
