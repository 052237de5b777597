"""Defaults more than one layer uses, declared once."""

from __future__ import annotations

# The square input side, in pixels, that Ultralytics trains its detectors at: every config key, command
# option and function that takes an input size defaults to it (tests/test_defaults.py finds no other 640).
DEFAULT_IMGSZ = 640
