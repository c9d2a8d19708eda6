"""The node's own MQTT broker, with identities: every client of it is one the agent made
(a container, a sensor feed, the data collector, a migration's peer, a sensor an operator
added), each limited to its own topics (Mosquitto's dynamic security plugin)."""
