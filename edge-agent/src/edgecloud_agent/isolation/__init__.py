"""What tenants share on a node, held apart: networks and the node firewall, the image
store, /app disks, files the agent writes into a tenant's volume. Each module names the
defence it keeps; :mod:`.provision` puts them together for one container."""
