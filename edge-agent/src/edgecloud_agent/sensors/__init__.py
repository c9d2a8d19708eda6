"""Sensor messages from the node's broker into the containers granted them."""
