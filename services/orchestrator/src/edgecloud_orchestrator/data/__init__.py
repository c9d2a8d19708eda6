"""Collected data: the numbers applications publish, as a time series per container."""
