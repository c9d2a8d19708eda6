"""Node reports received: their ids, so that a report a node repeats is applied once."""
