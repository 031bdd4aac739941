"""What a camera or an archive task reserves on the cluster: its `resources` section, else its method's defaults.

Defaults, from the per-frame costs in docs/scaling.md: the classical methods (blur, mosaic, solid)
are dominated by the detector and take one core; the neural methods (sdn, cyclegan) run a generator
per face as well and take two. A detector on a CUDA or TensorRT provider reserves one GPU.
"""

from __future__ import annotations

from typing import Any

from streamd.config import CameraConfig

CPUS_BY_METHOD = {"blur": 1.0, "mosaic": 1.0, "solid": 1.0, "sdn": 2.0, "cyclegan": 2.0}
GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


def uses_gpu(camera: CameraConfig) -> bool:
    providers = getattr(camera.detector, "providers", [])
    return any(provider in GPU_PROVIDERS for provider in providers)


def task_resources(camera: CameraConfig) -> dict[str, Any]:
    """Ray resource options (num_cpus, num_gpus and, when set, memory) for `camera`."""
    configured = camera.resources
    resources: dict[str, Any] = {
        "num_cpus": configured.num_cpus if configured.num_cpus is not None else CPUS_BY_METHOD[camera.anonymizer.method],
        "num_gpus": configured.num_gpus if configured.num_gpus is not None else (1.0 if uses_gpu(camera) else 0.0),
    }
    if configured.memory is not None:
        resources["memory"] = configured.memory
    return resources
