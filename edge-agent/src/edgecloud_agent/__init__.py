"""The edgecloud agent: one per edge node. It keeps the node connected to the cloud,
reports its health and containers, and (in later issues) runs what the cloud asks."""

__version__ = "0.1.0"
