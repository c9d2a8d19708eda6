"""The node's monitor: when to ask the scheduler to move containers off this node.

``pressure`` holds the detectors (sustained CPU, memory, disk or temperature over a
threshold, with hysteresis and a cooldown; a check failing in a row; an error counter
growing; a flag raised), ``health`` reads the health inputs (temperature, an operator's
probe command, disk I/O errors, the drain flag), and ``monitor`` the
:class:`~edgecloud_agent.monitor.monitor.Monitor` that samples them and calls
``edge.migration.request`` once per trigger. Short blips trigger nothing.
"""
