"""The testbed's own tests: simulated nodes on the cloud side of tests/support/testbed.py."""

from tests.support.testbed import (
    reachable_stack,
    testbed,
    testbed_network,
    testbed_nodes,
    testbed_stack_env,
)

__all__ = ["reachable_stack", "testbed", "testbed_network", "testbed_nodes", "testbed_stack_env"]
