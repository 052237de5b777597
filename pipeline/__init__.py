"""edgepipe: take an Ultralytics YOLOv8 detector to edge devices and prove it is fast enough to ship."""

from pipeline.offline import configure_offline

configure_offline()

__version__ = "0.1.0"
