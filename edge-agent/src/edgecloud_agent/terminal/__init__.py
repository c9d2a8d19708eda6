"""Commands and terminals inside tenant containers: one-shot exec and interactive shells."""
