"""Peer selection: which node each migrating container moves to."""
