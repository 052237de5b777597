"""The measurement harness: the same pre/post-processing, timing and metric for every backend."""

import pipeline  # noqa: F401  (sets the offline environment before Ultralytics is imported)
