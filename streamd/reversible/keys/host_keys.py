"""Host signing keys (Ed25519): each daemon signs the recordings it writes; the authority pins them.

- `streamd keys host` makes `host.key` (mode 0600) and `host.pub` on a daemon host, once, at install.
  Under systemd the private key reaches the service as a credential (`LoadCredential=`).
- `streamd keys trust HOST.pub` copies a host's public key into the authority's trust store (one
  file per key id); restore accepts only recordings signed by a key found there.

Key id: the first 16 hex digits of SHA-256 over the raw 32-byte Ed25519 public key.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streamd.reversible.keys.restore_keys import (
    CREDENTIAL_PREFIX,
    KeyFileError,
    _b64decode_field,
    _b64encode,
    _parse_key_document,
    _pretty_json,
    _read_key_file_bytes,
    _write_new_file_atomically,
    key_id_for_public_bytes,
    resolve_public_key_ref,
)

logger = logging.getLogger(__name__)

HOST_KEY_FORMAT = "streamd-host-key"
HOST_PUBLIC_KEY_FORMAT = "streamd-host-public-key"
HOST_KEY_VERSION = 1
HOST_KEY_ALGORITHM = "Ed25519"
HOST_KEY_FILENAME = "host.key"
HOST_PUBLIC_KEY_FILENAME = "host.pub"
HOST_KEY_ENV = "STREAMD_HOST_KEY"
HOST_KEY_CREDENTIAL = "streamd-host.key"
TRUST_STORE_ENV = "STREAMD_TRUSTED_HOSTS"


class HostKeyError(KeyFileError):
    """A host key or trust store entry is missing, unreadable, malformed or not trusted."""


@dataclass(frozen=True)
class HostPublicKey:
    key_id: str
    public_key: Ed25519PublicKey
    origin: str = ""

    @property
    def raw_bytes(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class HostPrivateKey:
    key_id: str
    private_key: Ed25519PrivateKey
    origin: str = ""

    @property
    def public(self) -> HostPublicKey:
        return HostPublicKey(self.key_id, self.private_key.public_key(), self.origin)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def _config_home() -> Path:
    configured = os.environ.get("XDG_CONFIG_HOME")
    return (Path(configured) if configured else Path.home() / ".config") / "streamd"


def default_host_key_dir() -> Path:
    return _config_home()


def default_trust_store() -> Path:
    """`$STREAMD_TRUSTED_HOSTS`, else `$XDG_CONFIG_HOME/streamd/trusted-hosts` (~/.config/...)."""
    configured = os.environ.get(TRUST_STORE_ENV)
    return Path(configured) if configured else _config_home() / "trusted-hosts"


def default_host_key_ref() -> str:
    """Where a writer finds its host key when none is configured: `$STREAMD_HOST_KEY`, else the systemd
    credential `streamd-host.key` when the unit passes one, else `$XDG_CONFIG_HOME/streamd/host.key`."""
    configured = os.environ.get(HOST_KEY_ENV)
    if configured:
        return configured
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / HOST_KEY_CREDENTIAL).is_file():
        return CREDENTIAL_PREFIX + HOST_KEY_CREDENTIAL
    return str(default_host_key_dir() / HOST_KEY_FILENAME)


def _public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_host_key(out_dir: str | Path) -> tuple[str, Path, Path]:
    """Write `out_dir/host.key` (0600) and `out_dir/host.pub`; never overwrites. Returns (key id, paths)."""
    directory = Path(out_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HostKeyError(f"cannot create key directory {directory}: {exc.strerror or exc}") from exc
    private_path, public_path = directory / HOST_KEY_FILENAME, directory / HOST_PUBLIC_KEY_FILENAME
    for existing in (private_path, public_path):
        if existing.exists() or existing.is_symlink():
            raise HostKeyError(f"{existing} already exists; refusing to overwrite a host key")
    private_key = Ed25519PrivateKey.generate()
    raw_public = _public_raw(private_key.public_key())
    key_id = key_id_for_public_bytes(raw_public)
    header = {"version": HOST_KEY_VERSION, "algorithm": HOST_KEY_ALGORITHM, "key_id": key_id,
              "public_key": _b64encode(raw_public)}
    raw_private = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
    private_document = {"format": HOST_KEY_FORMAT, **header, "private_key": _b64encode(raw_private)}
    _write_new_file_atomically(private_path, _pretty_json(private_document), mode=0o600)
    try:
        _write_new_file_atomically(public_path, _pretty_json({"format": HOST_PUBLIC_KEY_FORMAT, **header}), mode=0o644)
    except KeyFileError:
        private_path.unlink()
        raise
    logger.info("wrote host key %s (%s, %s)", key_id, private_path, public_path)
    return key_id, private_path, public_path


def _document(path: Path, expected_format: str, private: bool) -> tuple[dict[str, object], bytes, str]:
    document = _parse_key_document(_read_key_file_bytes(path, require_private_mode=private), path)
    file_format = document.get("format")
    if file_format != expected_format:
        hint = ""
        if file_format in ("streamd-restore-key", "streamd-restore-public-key"):
            hint = " (this is a restore key; host keys are made with `streamd keys host`)"
        elif file_format == HOST_PUBLIC_KEY_FORMAT:
            hint = " (this is the public half; the private host.key is needed here)"
        elif file_format == HOST_KEY_FORMAT:
            hint = " (this is a private host key; only host.pub belongs here)"
        raise HostKeyError(f"{path} has format {file_format!r}, expected {expected_format!r}{hint}")
    if document.get("version") != HOST_KEY_VERSION or document.get("algorithm") != HOST_KEY_ALGORITHM:
        raise HostKeyError(f"{path}: unsupported host key version {document.get('version')!r} "
                           f"or algorithm {document.get('algorithm')!r}")
    raw_public = _b64decode_field(document.get("public_key"), "public_key", HostKeyError, f"host key {path}")
    if len(raw_public) != 32:
        raise HostKeyError(f"{path}: the public key is {len(raw_public)} bytes, not 32")
    key_id = key_id_for_public_bytes(raw_public)
    if document.get("key_id") != key_id:
        raise HostKeyError(f"{path}: key id {document.get('key_id')!r} does not match its public key ({key_id})")
    return document, raw_public, key_id


def load_host_key(ref: str | Path) -> HostPrivateKey:
    """Load a private host key from a path or `credential:NAME`; refuses a file readable by others."""
    path = resolve_public_key_ref(ref)
    if not path.exists():
        raise HostKeyError(f"host key {path} does not exist: a restorable recording must be signed; create the "
                           f"key once with `streamd keys host --out {path.parent}` (or set {HOST_KEY_ENV})")
    document, raw_public, key_id = _document(path, HOST_KEY_FORMAT, private=True)
    raw_private = _b64decode_field(document.get("private_key"), "private_key", HostKeyError, f"host key {path}")
    if len(raw_private) != 32:
        raise HostKeyError(f"{path}: the private key is {len(raw_private)} bytes, not 32")
    private_key = Ed25519PrivateKey.from_private_bytes(raw_private)
    if _public_raw(private_key.public_key()) != raw_public:
        raise HostKeyError(f"{path}: the private key does not belong to the public key stored beside it")
    return HostPrivateKey(key_id, private_key, str(ref))


def load_host_public_key(path: str | Path) -> HostPublicKey:
    path = Path(path)
    _, raw_public, key_id = _document(path, HOST_PUBLIC_KEY_FORMAT, private=False)
    return HostPublicKey(key_id, Ed25519PublicKey.from_public_bytes(raw_public), str(path))


def host_public_key_from_raw(raw_public: bytes, origin: str = "") -> HostPublicKey:
    if len(raw_public) != 32:
        raise HostKeyError(f"a host public key is 32 bytes, got {len(raw_public)}")
    return HostPublicKey(key_id_for_public_bytes(raw_public), Ed25519PublicKey.from_public_bytes(raw_public), origin)


def trust_host(public_path: str | Path, store: str | Path | None = None) -> tuple[HostPublicKey, Path]:
    """Pin a host public key in the trust store (`<store>/<key id>.pub`); the same key twice is fine."""
    host = load_host_public_key(public_path)
    directory = Path(store) if store is not None else default_trust_store()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HostKeyError(f"cannot create trust store {directory}: {exc.strerror or exc}") from exc
    target = directory / f"{host.key_id}.pub"
    if not target.exists():
        temporary = directory / f".{host.key_id}.pub.tmp"
        shutil.copyfile(public_path, temporary)
        os.replace(temporary, target)
    return host, target


class TrustStore:
    """The host keys an authority accepts, read from one folder of pinned `<key id>.pub` files."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_trust_store()
        self._keys: dict[str, HostPublicKey] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.pub")):
                host = load_host_public_key(path)
                self._keys[host.key_id] = host

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def require(self, key_id: str, raw_public: bytes, what: str) -> HostPublicKey:
        """The pinned key for `key_id`; raises HostKeyError when it is unknown or differs."""
        pinned = self._keys.get(key_id)
        if pinned is None:
            raise HostKeyError(f"{what} is signed by host key {key_id}, which is not trusted here "
                               f"(trust store {self.folder}: {', '.join(self.key_ids) or 'empty'}); "
                               "if that host is yours: streamd keys trust HOST.pub")
        if pinned.raw_bytes != raw_public:
            raise HostKeyError(f"{what} claims host key id {key_id} with another public key than the pinned one")
        return pinned
