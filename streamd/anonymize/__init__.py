"""Per-face anonymizers behind one interface; `build_anonymizer` picks one by `method`."""

from __future__ import annotations

from streamd.anonymize.base import FaceAnonymizer
from streamd.config import AnonymizerConfig


def build_anonymizer(config: AnonymizerConfig) -> FaceAnonymizer:
    if config.method in ("blur", "mosaic", "solid"):
        from streamd.anonymize.classical import RegionAnonymizer

        return RegionAnonymizer(config)
    if config.method == "sdn":
        from streamd.anonymize.synthetic import SYNTHETIC_KIND, SyntheticIdentityAnonymizer
        from streamd.runtime.manifest import load_manifest

        if load_manifest(config.sdn.models_dir).model(config.sdn.model).kind == SYNTHETIC_KIND:
            return SyntheticIdentityAnonymizer(config)
        from streamd.anonymize.sdn import SdnAnonymizer

        return SdnAnonymizer(config)
    if config.method == "cyclegan":
        from streamd.anonymize.cyclegan import CycleganAnonymizer

        return CycleganAnonymizer(config)
    raise ValueError(f"unknown anonymization method {config.method!r}")


__all__ = ["FaceAnonymizer", "build_anonymizer"]
