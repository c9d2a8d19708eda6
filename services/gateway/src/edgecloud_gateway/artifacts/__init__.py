"""Public REST: artifacts (answered by the storage) and transfers for nodes."""
