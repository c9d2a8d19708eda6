"""Everything that crosses a process boundary in edgecloud: wire models and WAMP URIs.

No I/O lives here; services and the edge agent both import it.
"""
