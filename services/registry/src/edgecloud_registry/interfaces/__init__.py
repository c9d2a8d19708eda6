"""Hardware interfaces and sensor streams of each node, as operators declare them."""
