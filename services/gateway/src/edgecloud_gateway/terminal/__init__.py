"""Commands and terminals inside containers: one-shot exec and interactive shells."""
