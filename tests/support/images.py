"""Image sources the tests hand to the platform: a build context with its Dockerfile."""

import io
import tarfile


def build_context(dockerfile: str, files: dict[str, str]) -> bytes:
    """A build context tar: the Dockerfile at its root, and ``files`` beside it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
