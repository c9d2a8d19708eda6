"""Fixtures of the security tests, borrowed from the suites that own them."""

from tests.agent.conftest import names, runtime
from tests.integration.conftest import node

__all__ = ["names", "node", "runtime"]
