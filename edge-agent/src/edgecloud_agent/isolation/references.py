"""Image references as Docker writes them in an image's tags (``RepoTags``, ``RepoDigests``).

Docker shows ``docker.io/library/redis`` as ``redis:latest``: comparing a tenant's reference
with an image's tags needs both in that familiar form.
"""

DEFAULT_TAG = "latest"


def familiar(reference: str) -> str:
    """``docker.io/library/redis`` -> ``redis:latest``; ``r@sha256:..`` stays a digest
    reference (any tag beside a digest is dropped, as Docker resolves by the digest)."""
    name, at, digest = reference.partition("@")
    if at:
        name = _without_tag(name)
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(registry):
            name = name[len(registry) :]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    if at:
        return f"{name}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name = f"{name}:{DEFAULT_TAG}"
    return name


def _without_tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def names_image(reference: str, image: dict[str, object]) -> bool:
    """Whether ``reference`` is one of the tags or digests of ``image`` (an inspect result):
    Docker's own lookup also takes an image ID or a prefix of one, which a tenant must not
    use to reach an image it was never given."""
    wanted = familiar(reference)
    names = [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]  # type: ignore[misc]
    return any(isinstance(name, str) and familiar(name) == wanted for name in names)
