"""edgecloud: the command line for tenants, operators and scripts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgecloud-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
