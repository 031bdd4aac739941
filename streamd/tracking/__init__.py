"""Face tracking: detections become tracks that follow the image between detections."""

from streamd.tracking.tracker import FaceTracker

__all__ = ["FaceTracker"]
