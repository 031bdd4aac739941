"""One-shot anonymization of a video, an image or a folder of images (`streamd anonymize`)."""

from streamd.oneshot.planning import IMAGE_SUFFIXES, default_output, is_image_path, plan_image_pairs
from streamd.oneshot.run import OneShotResult, anonymize_images, anonymize_path, anonymize_video

__all__ = [
    "IMAGE_SUFFIXES",
    "OneShotResult",
    "anonymize_images",
    "anonymize_path",
    "anonymize_video",
    "default_output",
    "is_image_path",
    "plan_image_pairs",
]
