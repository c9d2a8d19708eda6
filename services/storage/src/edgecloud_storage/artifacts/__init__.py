"""Artifacts: metadata here, bytes in a :class:`~.backends.BlobStore`."""
