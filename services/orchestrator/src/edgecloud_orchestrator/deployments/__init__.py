"""Deployments: an application archive and its script brought into a container."""
