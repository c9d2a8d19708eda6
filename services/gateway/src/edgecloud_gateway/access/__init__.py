"""Who may keep a connection open, and for how long."""
