"""Maintainer scripts run from a checkout (`python -m tools.NAME`); not installed with edgepipe."""
