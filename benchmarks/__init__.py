"""The measurement harness: the same pre/post-processing, timing and metric for every backend."""

import core  # noqa: F401  (sets the offline environment before Ultralytics is imported)
