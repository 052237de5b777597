"""edgepipe: take an Ultralytics YOLOv8 detector to edge devices and prove it is fast enough to ship."""

from core import __version__  # importing core also sets the offline environment Ultralytics reads

__all__ = ["__version__"]
