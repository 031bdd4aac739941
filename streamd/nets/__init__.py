"""PyTorch networks (pure nn.Modules) shared by training, export and the torch runner.

Importing this package imports torch; the daemon's onnxruntime path never imports it.
"""

from streamd.nets.sdn import (
    CELEBA_DEFAULT_ATTRIBUTES,
    MIN_PASSWORD_BITS,
    SDN_SIZES,
    Decoder,
    Discriminator,
    Encoder,
    ErasingNetwork,
    FeatureClassifier,
    FeatureExtractor,
    IdentityNetwork,
    RevealNetwork,
    SdnConfig,
    SdnGenerators,
    SecureDualNetwork,
    build_sdn,
    build_sdn_from_config,
    load_generators,
    save_generators,
    sdn_config,
)

__all__ = [
    "CELEBA_DEFAULT_ATTRIBUTES",
    "MIN_PASSWORD_BITS",
    "SDN_SIZES",
    "Decoder",
    "Discriminator",
    "Encoder",
    "ErasingNetwork",
    "FeatureClassifier",
    "FeatureExtractor",
    "IdentityNetwork",
    "RevealNetwork",
    "SdnConfig",
    "SdnGenerators",
    "SecureDualNetwork",
    "build_sdn",
    "build_sdn_from_config",
    "load_generators",
    "save_generators",
    "sdn_config",
]
