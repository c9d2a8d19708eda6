"""Migrations: their records, states and timed steps.

Named ``moves`` because ``migrations`` is the package of this service's schema revisions.
"""
