"""The layer every other package builds on: errors, artifacts, YAML, progress, checkpoints, datasets,
calibration and the letterbox pre-process. It imports no other edgepipe package."""

from core.offline import configure_offline

configure_offline()

__version__ = "0.1.0"
