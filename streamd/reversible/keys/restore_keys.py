"""Restore key pairs, per-track keys, key wrapping and the derivations from a track key.

Key hierarchy (docs/keys.md has the file formats and every label):

- A restore key pair (X25519) belongs to a restore authority. Only its public half is deployed to
  daemon hosts. Its key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
- A track key is 32 random bytes made when a track starts. It is wrapped to each restore public key
  (ephemeral-static X25519, HKDF-SHA256, ChaCha20-Poly1305) and otherwise lives only in memory.
- From a track key, HKDF-SHA256 with distinct labels derives the SDN password bits and the AEAD key
  for sealed payloads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from streamd.reversible.canonical import canonical_json_bytes
from streamd.errors import StreamdError

logger = logging.getLogger(__name__)

TRACK_KEY_BYTES = 32
KEY_ID_HEX_DIGITS = 16
PRIVATE_KEY_FILENAME = "restore.key"
PUBLIC_KEY_FILENAME = "restore.pub"

PRIVATE_KEY_FORMAT = "streamd-restore-key"
PUBLIC_KEY_FORMAT = "streamd-restore-public-key"
KEY_FILE_VERSION = 1
KEY_ALGORITHM = "X25519"
PROTECTION_NONE = "none"
PROTECTION_SCRYPT_CHACHA = "scrypt+chacha20poly1305"

SCRYPT_SALT_BYTES = 16
SCRYPT_N = 2**17
# Key files written before the cost was raised still open; they are reported as weak.
SCRYPT_N_RECOMMENDED = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# Bounds accepted when reading a key file, so an edited file cannot demand gigabytes of memory.
SCRYPT_N_RANGE = (2**14, 2**22)
SCRYPT_R_RANGE = (1, 32)
SCRYPT_P_RANGE = (1, 16)

CHACHA_NONCE_BYTES = 12
CHACHA_KEY_BYTES = 32
MAX_KEY_FILE_BYTES = 64 * 1024

WRAP_LABEL = b"streamd/track-key-wrap/v1"
WRAP_VERSION = 1
WRAP_ALGORITHM = "X25519-HKDF-SHA256-ChaCha20Poly1305"
SDN_PASSWORD_LABEL = b"streamd/sdn-password/v1"
SEAL_KEY_LABEL = b"streamd/seal/v1"
AUDIT_KEY_LABEL = b"streamd/audit-mac/v1"
RECIPIENT_CHECK_CONTEXT = b"streamd/recipient-check/v1"
HKDF_MAX_BYTES = 255 * 32

CREDENTIAL_PREFIX = "credential:"
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"


class KeyFileError(StreamdError):
    """A key file is missing, unreadable, too widely readable, malformed, or cannot be written."""


class PassphraseRequiredError(KeyFileError):
    """The private key file is passphrase-protected and no passphrase was given."""


class WrongPassphraseError(KeyFileError):
    """The passphrase does not decrypt the private key file."""


class UnknownKeyIdError(StreamdError):
    """None of the wrapped track keys is addressed to the given restore key."""


class KeyUnwrapError(StreamdError):
    """A wrapped track key addressed to this restore key failed to decrypt or is malformed."""


@dataclass(frozen=True)
class RestorePublicKey:
    """A restore authority's public key, as deployed to daemon hosts. `origin` says where it was read."""

    key_id: str
    public_key: X25519PublicKey
    origin: str = ""

    @property
    def raw_bytes(self) -> bytes:
        return _raw_public_bytes(self.public_key)


@dataclass(frozen=True)
class RestorePrivateKey:
    """A restore authority's private key, loaded for a restore run."""

    key_id: str
    private_key: X25519PrivateKey
    origin: str = ""

    @property
    def public(self) -> RestorePublicKey:
        return RestorePublicKey(key_id=self.key_id, public_key=self.private_key.public_key(), origin=self.origin)


@dataclass(frozen=True)
class RestoreKeyPairPaths:
    """What `generate_restore_keypair` wrote."""

    key_id: str
    private_key_path: Path
    public_key_path: Path


@dataclass(frozen=True)
class WrappedKey:
    """A track key encrypted to one restore public key.

    `ephemeral_public` is the sender's one-time X25519 public key; `ciphertext` is the ChaCha20-Poly1305
    output (32-byte track key plus 16-byte tag).
    """

    key_id: str
    ephemeral_public: bytes
    ciphertext: bytes

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict (binary fields in standard base64)."""
        return {
            "v": WRAP_VERSION,
            "alg": WRAP_ALGORITHM,
            "key_id": self.key_id,
            "epk": _b64encode(self.ephemeral_public),
            "ct": _b64encode(self.ciphertext),
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, object]) -> "WrappedKey":
        """Parse a dict made by `to_dict`; raises KeyUnwrapError naming the bad field."""
        if not isinstance(entry, Mapping):
            raise KeyUnwrapError(f"malformed wrapped key: expected an object, got {type(entry).__name__}")
        version = entry.get("v")
        if version != WRAP_VERSION:
            raise KeyUnwrapError(f"wrapped key has version {version!r}; this build reads version {WRAP_VERSION}")
        algorithm = entry.get("alg")
        if algorithm != WRAP_ALGORITHM:
            raise KeyUnwrapError(f"wrapped key uses algorithm {algorithm!r}; this build reads {WRAP_ALGORITHM}")
        key_id = entry.get("key_id")
        if not _is_key_id(key_id):
            raise KeyUnwrapError(f"malformed wrapped key: key_id {key_id!r} is not {KEY_ID_HEX_DIGITS} hex digits")
        ephemeral_public = _b64decode_field(entry.get("epk"), "epk", KeyUnwrapError, "wrapped key")
        ciphertext = _b64decode_field(entry.get("ct"), "ct", KeyUnwrapError, "wrapped key")
        if len(ephemeral_public) != 32:
            raise KeyUnwrapError(
                f"malformed wrapped key for key id {key_id}: epk is {len(ephemeral_public)} bytes, not 32"
            )
        if len(ciphertext) != TRACK_KEY_BYTES + 16:
            raise KeyUnwrapError(
                f"malformed wrapped key for key id {key_id}: ct is {len(ciphertext)} bytes, not {TRACK_KEY_BYTES + 16}"
            )
        return cls(key_id=str(key_id), ephemeral_public=ephemeral_public, ciphertext=ciphertext)


# ---------------------------------------------------------------------------------------------------
# Key ids and small helpers


def key_id_for_public_bytes(raw_public: bytes) -> str:
    """The key id of a raw 32-byte X25519 public key: first 16 hex digits of its SHA-256."""
    if len(raw_public) != 32:
        raise ValueError(f"an X25519 public key is 32 bytes, got {len(raw_public)}")
    return hashlib.sha256(raw_public).hexdigest()[:KEY_ID_HEX_DIGITS]


def _raw_public_bytes(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


def _raw_private_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        encoding=serialization.Encoding.Raw,
        format=serialization.PrivateFormat.Raw,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _is_key_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == KEY_ID_HEX_DIGITS
        and all(character in "0123456789abcdef" for character in value)
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_field(value: object, field_name: str, error_class: type[StreamdError], what: str) -> bytes:
    if not isinstance(value, str):
        raise error_class(f"malformed {what}: field {field_name!r} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise error_class(f"malformed {what}: field {field_name!r} is not valid base64 ({exc})") from exc


def read_passphrase_file(path: str | Path) -> bytes:
    """Read a passphrase from a file; one trailing newline (LF or CRLF) is removed. Empty is refused."""
    passphrase_path = Path(path)
    try:
        passphrase = passphrase_path.read_bytes()
        permission_bits = stat.S_IMODE(passphrase_path.stat().st_mode)
    except OSError as exc:
        raise KeyFileError(f"cannot read passphrase file {passphrase_path}: {exc.strerror or exc}") from exc
    if permission_bits & 0o077:
        logger.warning("passphrase file %s has mode %04o: group or others can read it; run: chmod 600 %s",
                       passphrase_path, permission_bits, passphrase_path)
    if passphrase.endswith(b"\r\n"):
        passphrase = passphrase[:-2]
    elif passphrase.endswith(b"\n"):
        passphrase = passphrase[:-1]
    if not passphrase:
        raise KeyFileError(f"passphrase file {passphrase_path} is empty")
    return passphrase


# ---------------------------------------------------------------------------------------------------
# Writing key files


def generate_restore_keypair(out_dir: str | Path, passphrase: bytes | None) -> RestoreKeyPairPaths:
    """Make an X25519 restore key pair and write `out_dir/restore.key` (0600) and `out_dir/restore.pub`.

    The private key file is created with mode 0600 from its first byte and appears under its final
    name only once complete. Existing key files are never overwritten. With a passphrase the private
    key is encrypted (scrypt + ChaCha20-Poly1305); without one it is stored in the clear, protected by
    the file mode only.
    """
    if passphrase is not None and len(passphrase) == 0:
        raise KeyFileError("an empty passphrase protects nothing; give a non-empty passphrase or none")
    directory = Path(out_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create key directory {directory}: {exc.strerror or exc}") from exc
    private_path = directory / PRIVATE_KEY_FILENAME
    public_path = directory / PUBLIC_KEY_FILENAME
    for existing in (private_path, public_path):
        if existing.exists() or existing.is_symlink():
            raise KeyFileError(f"{existing} already exists; refusing to overwrite a key file")

    private_key = X25519PrivateKey.generate()
    raw_public = _raw_public_bytes(private_key.public_key())
    key_id = key_id_for_public_bytes(raw_public)
    private_document = _private_key_document(private_key, key_id, raw_public, passphrase)
    public_document = {
        "format": PUBLIC_KEY_FORMAT,
        "version": KEY_FILE_VERSION,
        "algorithm": KEY_ALGORITHM,
        "key_id": key_id,
        "public_key": _b64encode(raw_public),
    }
    _write_new_file_atomically(private_path, _pretty_json(private_document), mode=0o600)
    try:
        _write_new_file_atomically(public_path, _pretty_json(public_document), mode=0o644)
    except KeyFileError:
        private_path.unlink()
        raise
    logger.info(
        "wrote restore key pair %s (private %s, public %s, %s)",
        key_id,
        private_path,
        public_path,
        "passphrase-protected" if passphrase is not None else "not passphrase-protected",
    )
    return RestoreKeyPairPaths(key_id=key_id, private_key_path=private_path, public_key_path=public_path)


def _private_key_document(
    private_key: X25519PrivateKey, key_id: str, raw_public: bytes, passphrase: bytes | None
) -> dict[str, object]:
    document: dict[str, object] = {
        "format": PRIVATE_KEY_FORMAT,
        "version": KEY_FILE_VERSION,
        "algorithm": KEY_ALGORITHM,
        "key_id": key_id,
        "public_key": _b64encode(raw_public),
    }
    raw_private = _raw_private_bytes(private_key)
    if passphrase is None:
        document["protection"] = PROTECTION_NONE
        document["private_key"] = _b64encode(raw_private)
        return document
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    nonce = secrets.token_bytes(CHACHA_NONCE_BYTES)
    document["protection"] = PROTECTION_SCRYPT_CHACHA
    document["kdf"] = {"name": "scrypt", "salt": _b64encode(salt), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    document["nonce"] = _b64encode(nonce)
    wrapping_key = Scrypt(salt=salt, length=CHACHA_KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    associated_data = canonical_json_bytes(document)
    encrypted_private_key = ChaCha20Poly1305(wrapping_key).encrypt(nonce, raw_private, associated_data)
    document["encrypted_private_key"] = _b64encode(encrypted_private_key)
    return document


def _pretty_json(document: Mapping[str, object]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("ascii")


def _write_new_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a new file `path` with exactly `mode`; fails if `path` exists.

    The content goes to a temporary file created with `mode` (so never more permissive than `mode`,
    whatever the umask), is fsynced, then hard-linked to `path`, which fails if `path` appeared meanwhile.
    """
    temporary_path = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise KeyFileError(f"cannot create {temporary_path}: {exc.strerror or exc}") from exc
    try:
        try:
            os.fchmod(descriptor, mode)
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary_path, path)
        except FileExistsError as exc:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key file") from exc
        except OSError as exc:
            raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write {temporary_path}: {exc.strerror or exc}") from exc
    finally:
        temporary_path.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------------
# Reading key files


def resolve_public_key_ref(ref: str | Path) -> Path:
    """Turn a public key reference into a path: a file path, or `credential:NAME` for a systemd credential.

    `credential:NAME` names `$CREDENTIALS_DIRECTORY/NAME`, which systemd provides to a unit that has
    `LoadCredential=NAME:/path/to/restore.pub`.
    """
    if isinstance(ref, Path):
        return ref
    if not ref.startswith(CREDENTIAL_PREFIX):
        if not ref:
            raise KeyFileError("empty public key reference; give a file path or credential:NAME")
        return Path(ref)
    credential_name = ref[len(CREDENTIAL_PREFIX) :]
    if not credential_name or "/" in credential_name or credential_name in (".", ".."):
        raise KeyFileError(f"public key reference {ref!r}: the credential name must be a plain file name")
    credentials_directory = os.environ.get(CREDENTIALS_DIRECTORY_ENV)
    if not credentials_directory:
        raise KeyFileError(
            f"public key reference {ref!r} needs ${CREDENTIALS_DIRECTORY_ENV}, which systemd sets for a unit "
            f"with LoadCredential={credential_name}:...; it is not set"
        )
    return Path(credentials_directory) / credential_name


def load_public_key_ref(ref: str | Path) -> RestorePublicKey:
    """Load a public key given as a path or `credential:NAME`."""
    public_key = load_public_key(resolve_public_key_ref(ref))
    return RestorePublicKey(key_id=public_key.key_id, public_key=public_key.public_key, origin=str(ref))


def load_public_keys(refs: Sequence[str | Path]) -> list[RestorePublicKey]:
    """Load several recipients; the same key named twice is an error (it would be wrapped twice)."""
    recipients: list[RestorePublicKey] = []
    origin_by_key_id: dict[str, str] = {}
    for ref in refs:
        recipient = load_public_key_ref(ref)
        if recipient.key_id in origin_by_key_id:
            raise KeyFileError(
                f"restore public key {recipient.key_id} is given twice ({origin_by_key_id[recipient.key_id]} and {ref})"
            )
        origin_by_key_id[recipient.key_id] = str(ref)
        check_recipient(recipient)
        recipients.append(recipient)
    return recipients


def check_recipient(recipient: RestorePublicKey) -> None:
    """Wrap a throwaway key to `recipient`, so an unusable key (all zeros, a low-order point) fails now,
    with its name, instead of at every track later."""
    wrap_track_key(new_track_key(), [recipient], RECIPIENT_CHECK_CONTEXT)


def load_public_key(path: str | Path) -> RestorePublicKey:
    """Read a `restore.pub` file; checks the format, version and that the key id matches the key."""
    key_path = Path(path)
    document = _parse_key_document(_read_key_file_bytes(key_path, require_private_mode=False), key_path)
    _check_document_header(document, key_path, PUBLIC_KEY_FORMAT)
    raw_public, key_id = _document_public_key(document, key_path)
    public_key = X25519PublicKey.from_public_bytes(raw_public)
    return RestorePublicKey(key_id=key_id, public_key=public_key, origin=str(key_path))


def load_private_key(path: str | Path, passphrase: bytes | None) -> RestorePrivateKey:
    """Read a `restore.key` file.

    Refuses a file readable or writable by group or others, a protected key without a passphrase, a
    passphrase for an unprotected key, a wrong passphrase, and a file whose private and public halves
    or key id disagree.
    """
    key_path = Path(path)
    data, permission_bits = _read_key_file(key_path)
    document = _parse_key_document(data, key_path)
    if document.get("format") == PUBLIC_KEY_FORMAT:
        raise KeyFileError(f"{key_path} is a restore public key (restore.pub); restore needs the private key "
                           "(restore.key) that was made beside it")
    _check_document_header(document, key_path, PRIVATE_KEY_FORMAT)
    _refuse_open_mode(key_path, permission_bits)
    raw_public, key_id = _document_public_key(document, key_path)
    protection = document.get("protection")
    if protection == PROTECTION_NONE:
        if passphrase is not None:
            raise KeyFileError(
                f"restore key {key_path} is not passphrase-protected but a passphrase was given; "
                "omit the passphrase (or re-create the key with one)"
            )
        raw_private = _b64decode_field(document.get("private_key"), "private_key", KeyFileError, f"key file {key_path}")
    elif protection == PROTECTION_SCRYPT_CHACHA:
        if passphrase is None:
            raise PassphraseRequiredError(f"restore key {key_path} is passphrase-protected; give its passphrase")
        raw_private = _decrypt_private_key(document, key_path, passphrase)
    else:
        raise KeyFileError(f"key file {key_path}: unknown protection {protection!r}")
    if len(raw_private) != 32:
        raise KeyFileError(f"key file {key_path}: the private key is {len(raw_private)} bytes, not 32")
    private_key = X25519PrivateKey.from_private_bytes(raw_private)
    if _raw_public_bytes(private_key.public_key()) != raw_public:
        raise KeyFileError(f"key file {key_path}: the private key does not belong to the public key stored beside it")
    return RestorePrivateKey(key_id=key_id, private_key=private_key, origin=str(key_path))


def _decrypt_private_key(document: Mapping[str, object], key_path: Path, passphrase: bytes) -> bytes:
    what = f"key file {key_path}"
    kdf = document.get("kdf")
    if not isinstance(kdf, Mapping) or kdf.get("name") != "scrypt":
        raise KeyFileError(f"{what}: field 'kdf' must describe scrypt")
    salt = _b64decode_field(kdf.get("salt"), "kdf.salt", KeyFileError, what)
    cost_n = _scrypt_parameter(kdf, "n", SCRYPT_N_RANGE, what)
    block_r = _scrypt_parameter(kdf, "r", SCRYPT_R_RANGE, what)
    parallel_p = _scrypt_parameter(kdf, "p", SCRYPT_P_RANGE, what)
    if cost_n & (cost_n - 1):
        raise KeyFileError(f"{what}: scrypt parameter n={cost_n} is not a power of two")
    if cost_n < SCRYPT_N_RECOMMENDED:
        logger.warning("%s: passphrase protected with scrypt n=%d, weaker than the n=%d streamd now uses; "
                       "re-create the key to raise the cost of guessing", what, cost_n, SCRYPT_N_RECOMMENDED)
    nonce = _b64decode_field(document.get("nonce"), "nonce", KeyFileError, what)
    if len(nonce) != CHACHA_NONCE_BYTES:
        raise KeyFileError(f"{what}: nonce is {len(nonce)} bytes, not {CHACHA_NONCE_BYTES}")
    encrypted = _b64decode_field(document.get("encrypted_private_key"), "encrypted_private_key", KeyFileError, what)
    authenticated_fields = {name: value for name, value in document.items() if name != "encrypted_private_key"}
    wrapping_key = Scrypt(salt=salt, length=CHACHA_KEY_BYTES, n=cost_n, r=block_r, p=parallel_p).derive(passphrase)
    try:
        return ChaCha20Poly1305(wrapping_key).decrypt(nonce, encrypted, canonical_json_bytes(authenticated_fields))
    except InvalidTag as exc:
        raise WrongPassphraseError(
            f"wrong passphrase for restore key {key_path} (or the key file was modified)"
        ) from exc


def _scrypt_parameter(kdf: Mapping[str, object], name: str, bounds: tuple[int, int], what: str) -> int:
    value = kdf.get(name)
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise KeyFileError(f"{what}: scrypt parameter {name}={value!r} is outside {low}..{high}")
    return value


def _refuse_open_mode(key_path: Path, permission_bits: int) -> None:
    if permission_bits & 0o077:
        raise KeyFileError(
            f"restore key {key_path} has mode {permission_bits:04o}, so group or others can read or change it; "
            f"refusing to use it. Run: chmod 600 {key_path}"
        )


def _read_key_file_bytes(key_path: Path, require_private_mode: bool) -> bytes:
    data, permission_bits = _read_key_file(key_path)
    if require_private_mode:
        _refuse_open_mode(key_path, permission_bits)
    return data


def _read_key_file(key_path: Path) -> tuple[bytes, int]:
    try:
        descriptor = os.open(key_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {key_path} does not exist") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {key_path}: {exc.strerror or exc}") from exc
    try:
        file_status = os.fstat(descriptor)
        if not stat.S_ISREG(file_status.st_mode):
            raise KeyFileError(f"key file {key_path} is not a regular file")
        permission_bits = stat.S_IMODE(file_status.st_mode)
        if file_status.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"key file {key_path} is {file_status.st_size} bytes; a key file is far smaller")
        chunks: list[bytes] = []
        while True:
            chunk = os.read(descriptor, MAX_KEY_FILE_BYTES + 1)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), permission_bits
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {key_path}: {exc.strerror or exc}") from exc
    finally:
        os.close(descriptor)


def _parse_key_document(data: bytes, key_path: Path) -> dict[str, object]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"key file {key_path} is not a streamd key file (not JSON: {exc})") from exc
    if not isinstance(document, dict):
        raise KeyFileError(f"key file {key_path} is not a streamd key file (top level is not an object)")
    return document


def _check_document_header(document: Mapping[str, object], key_path: Path, expected_format: str) -> None:
    file_format = document.get("format")
    if file_format != expected_format:
        hint = ""
        if file_format == PUBLIC_KEY_FORMAT:
            hint = " (this is a public key; a private key is needed here)"
        elif file_format == PRIVATE_KEY_FORMAT:
            hint = " (this is a private key; only the public key belongs here)"
        raise KeyFileError(f"key file {key_path} has format {file_format!r}, expected {expected_format!r}{hint}")
    version = document.get("version")
    if version != KEY_FILE_VERSION:
        raise KeyFileError(f"key file {key_path} has version {version!r}; this build reads version {KEY_FILE_VERSION}")
    algorithm = document.get("algorithm")
    if algorithm != KEY_ALGORITHM:
        raise KeyFileError(f"key file {key_path} uses algorithm {algorithm!r}; this build reads {KEY_ALGORITHM}")


def _document_public_key(document: Mapping[str, object], key_path: Path) -> tuple[bytes, str]:
    raw_public = _b64decode_field(document.get("public_key"), "public_key", KeyFileError, f"key file {key_path}")
    if len(raw_public) != 32:
        raise KeyFileError(f"key file {key_path}: the public key is {len(raw_public)} bytes, not 32")
    key_id = key_id_for_public_bytes(raw_public)
    stored_key_id = document.get("key_id")
    if stored_key_id != key_id:
        raise KeyFileError(
            f"key file {key_path}: key id {stored_key_id!r} does not match its public key (which has id {key_id})"
        )
    return raw_public, key_id


# ---------------------------------------------------------------------------------------------------
# Track keys


def new_track_key() -> bytes:
    """32 fresh random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(TRACK_KEY_BYTES)


def track_key_context(camera: str, stream_epoch: str | int, track_id: int) -> bytes:
    """The context bytes that bind a wrapped track key to one camera, stream epoch and track.

    Canonical JSON of {"camera", "stream_epoch" (as text), "track_id"}; readers rebuild it from the
    event that carries the wrapped keys.
    """
    if isinstance(stream_epoch, bool) or not isinstance(stream_epoch, (str, int)):
        raise ValueError(f"stream_epoch must be a str or int, got {stream_epoch!r}")
    if not isinstance(track_id, int) or isinstance(track_id, bool) or track_id < 0:
        raise ValueError(f"track_id must be a non-negative int, got {track_id!r}")
    return canonical_json_bytes({"camera": str(camera), "stream_epoch": str(stream_epoch), "track_id": track_id})


def _check_track_key(track_key: bytes) -> None:
    if not isinstance(track_key, (bytes, bytearray)) or len(track_key) != TRACK_KEY_BYTES:
        raise ValueError(f"a track key is {TRACK_KEY_BYTES} bytes")


def _wrap_associated_data(key_id: str, context: bytes) -> bytes:
    # label, key id (16 hex digits) and the caller's context, NUL-separated; the first two never hold NUL.
    return WRAP_LABEL + b"\x00" + key_id.encode("ascii") + b"\x00" + context


def _wrap_key_and_nonce(shared_secret: bytes, ephemeral_public: bytes, recipient_public: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=CHACHA_KEY_BYTES + CHACHA_NONCE_BYTES,
        salt=ephemeral_public + recipient_public,
        info=WRAP_LABEL,
    ).derive(shared_secret)
    return okm[:CHACHA_KEY_BYTES], okm[CHACHA_KEY_BYTES:]


def wrap_track_key(track_key: bytes, recipients: Sequence[RestorePublicKey], context: bytes) -> list[WrappedKey]:
    """Encrypt `track_key` to every recipient; `context` (see `track_key_context`) is authenticated.

    Each entry uses a fresh ephemeral X25519 key, so entries for different recipients are unlinkable
    beyond their key ids.
    """
    _check_track_key(track_key)
    if not recipients:
        raise ValueError("wrap_track_key needs at least one recipient")
    wrapped_keys: list[WrappedKey] = []
    for recipient in recipients:
        ephemeral_private = X25519PrivateKey.generate()
        ephemeral_public = _raw_public_bytes(ephemeral_private.public_key())
        recipient_public = recipient.raw_bytes
        try:
            shared_secret = ephemeral_private.exchange(recipient.public_key)
        except ValueError as exc:
            raise KeyFileError(
                f"restore public key {recipient.key_id} ({recipient.origin or 'given'}) is not a usable X25519 key "
                "(all zeros or a low-order point): no track key can be wrapped to it; replace it with the real restore.pub"
            ) from exc
        wrap_key, nonce = _wrap_key_and_nonce(shared_secret, ephemeral_public, recipient_public)
        ciphertext = ChaCha20Poly1305(wrap_key).encrypt(
            nonce, bytes(track_key), _wrap_associated_data(recipient.key_id, context)
        )
        wrapped_keys.append(
            WrappedKey(key_id=recipient.key_id, ephemeral_public=ephemeral_public, ciphertext=ciphertext)
        )
    return wrapped_keys


def unwrap_track_key(
    wrapped_list: Sequence[WrappedKey | Mapping[str, object]], private_key: RestorePrivateKey, context: bytes
) -> bytes:
    """Recover the track key from the entry addressed to `private_key`.

    Raises UnknownKeyIdError when no entry carries this key id, and KeyUnwrapError when the entry fails
    authentication (tampered, or bound to another camera, stream epoch or track).
    """
    wrapped_keys = [entry if isinstance(entry, WrappedKey) else WrappedKey.from_dict(entry) for entry in wrapped_list]
    matching = [entry for entry in wrapped_keys if entry.key_id == private_key.key_id]
    if not matching:
        present = sorted({entry.key_id for entry in wrapped_keys})
        raise UnknownKeyIdError(
            f"no wrapped track key is addressed to restore key {private_key.key_id}; "
            f"the track key is wrapped for key id(s): {', '.join(present) if present else 'none'}"
        )
    recipient_public = private_key.public.raw_bytes
    associated_data = _wrap_associated_data(private_key.key_id, context)
    for entry in matching:
        try:
            shared_secret = private_key.private_key.exchange(X25519PublicKey.from_public_bytes(entry.ephemeral_public))
        except ValueError as exc:
            raise KeyUnwrapError(
                f"wrapped track key for key id {entry.key_id} has an invalid ephemeral public key (tampered?)"
            ) from exc
        wrap_key, nonce = _wrap_key_and_nonce(shared_secret, entry.ephemeral_public, recipient_public)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(nonce, entry.ciphertext, associated_data)
        except InvalidTag:
            logger.debug("wrapped key entry for %s failed authentication", entry.key_id)
    raise KeyUnwrapError(
        f"authentication failed for the track key wrapped to key id {private_key.key_id}: "
        "the wrapped key was tampered with, bound to another camera/stream/track, or the private key "
        "does not match its key id"
    )


# ---------------------------------------------------------------------------------------------------
# Derivations


def _derive(track_key: bytes, label: bytes, length: int) -> bytes:
    _check_track_key(track_key)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(bytes(track_key))


def derive_password_bits(track_key: bytes, n_bits: int) -> np.ndarray:
    """The SDN password for a track: `n_bits` values of 0.0 or 1.0 (float32), from HKDF label
    "streamd/sdn-password/v1". Not a secret on its own: it is only as strong as the track key."""
    if not isinstance(n_bits, int) or isinstance(n_bits, bool) or not 1 <= n_bits <= HKDF_MAX_BYTES * 8:
        raise ValueError(f"n_bits must be an int in 1..{HKDF_MAX_BYTES * 8}, got {n_bits!r}")
    derived = _derive(track_key, SDN_PASSWORD_LABEL, (n_bits + 7) // 8)
    return np.unpackbits(np.frombuffer(derived, dtype=np.uint8))[:n_bits].astype(np.float32)


def derive_payload_key(track_key: bytes) -> bytes:
    """The 32-byte ChaCha20-Poly1305 key for a track's sealed payloads (HKDF label "streamd/seal/v1")."""
    return _derive(track_key, SEAL_KEY_LABEL, CHACHA_KEY_BYTES)


def derive_audit_key(private_key: RestorePrivateKey) -> bytes:
    """The HMAC key that authenticates audit entries written with this restore key (HKDF-SHA256 of the
    raw X25519 private key, label "streamd/audit-mac/v1")."""
    raw_private = _raw_private_bytes(private_key.private_key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AUDIT_KEY_LABEL).derive(raw_private)
