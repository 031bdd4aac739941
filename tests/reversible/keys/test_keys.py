"""Restore key files, track key wrapping and derivations."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import numpy as np
import pytest

from streamd.errors import StreamdError
from streamd.reversible.keys.restore_keys import (
    KeyFileError,
    KeyUnwrapError,
    PassphraseRequiredError,
    UnknownKeyIdError,
    WrappedKey,
    WrongPassphraseError,
    derive_password_bits,
    derive_payload_key,
    generate_restore_keypair,
    key_id_for_public_bytes,
    load_private_key,
    load_public_key,
    load_public_key_ref,
    load_public_keys,
    new_track_key,
    read_passphrase_file,
    resolve_public_key_ref,
    track_key_context,
    unwrap_track_key,
    wrap_track_key,
)

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def protected_pair(tmp_path_factory):
    return generate_restore_keypair(tmp_path_factory.mktemp("protected") / "keys", PASSPHRASE)


@pytest.fixture(scope="module")
def plain_pair(tmp_path_factory):
    return generate_restore_keypair(tmp_path_factory.mktemp("plain"), None)


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory):
    return generate_restore_keypair(tmp_path_factory.mktemp("other"), None)


def test_key_files_have_expected_modes_and_ids(protected_pair):
    assert stat.S_IMODE(os.stat(protected_pair.private_key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(protected_pair.public_key_path).st_mode) == 0o644
    public_document = json.loads(protected_pair.public_key_path.read_text())
    assert public_document["key_id"] == protected_pair.key_id
    assert len(protected_pair.key_id) == 16
    private_document = json.loads(protected_pair.private_key_path.read_text())
    assert private_document["protection"] == "scrypt+chacha20poly1305"
    assert "private_key" not in private_document
    # no temporary files left behind
    key_directory = protected_pair.private_key_path.parent
    assert sorted(path.name for path in key_directory.iterdir()) == ["restore.key", "restore.pub"]


def test_private_key_created_0600_despite_permissive_umask(tmp_path):
    previous_umask = os.umask(0)
    try:
        pair = generate_restore_keypair(tmp_path / "keys", None)
    finally:
        os.umask(previous_umask)
    assert stat.S_IMODE(os.stat(pair.private_key_path).st_mode) == 0o600


def test_round_trip_protected_and_plain(protected_pair, plain_pair):
    private_key = load_private_key(protected_pair.private_key_path, PASSPHRASE)
    public_key = load_public_key(protected_pair.public_key_path)
    assert private_key.key_id == public_key.key_id == protected_pair.key_id
    assert private_key.public.raw_bytes == public_key.raw_bytes
    assert key_id_for_public_bytes(public_key.raw_bytes) == protected_pair.key_id
    plain_private = load_private_key(plain_pair.private_key_path, None)
    assert plain_private.key_id == plain_pair.key_id


def test_refuses_to_overwrite(plain_pair):
    with pytest.raises(KeyFileError, match="already exists"):
        generate_restore_keypair(plain_pair.private_key_path.parent, None)


def test_private_key_readable_by_others_is_refused(tmp_path):
    pair = generate_restore_keypair(tmp_path, None)
    os.chmod(pair.private_key_path, 0o644)
    with pytest.raises(KeyFileError, match=r"mode 0644.*chmod 600"):
        load_private_key(pair.private_key_path, None)
    os.chmod(pair.private_key_path, 0o640)
    with pytest.raises(KeyFileError, match="mode 0640"):
        load_private_key(pair.private_key_path, None)
    os.chmod(pair.private_key_path, 0o600)
    assert load_private_key(pair.private_key_path, None).key_id == pair.key_id


def test_wrong_passphrase(protected_pair):
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        load_private_key(protected_pair.private_key_path, b"not the passphrase")


def test_missing_passphrase(protected_pair):
    with pytest.raises(PassphraseRequiredError, match="passphrase-protected"):
        load_private_key(protected_pair.private_key_path, None)


def test_passphrase_for_unprotected_key_is_an_error(plain_pair):
    with pytest.raises(KeyFileError, match="not passphrase-protected"):
        load_private_key(plain_pair.private_key_path, PASSPHRASE)


def test_empty_passphrase_refused(tmp_path):
    with pytest.raises(KeyFileError, match="empty passphrase"):
        generate_restore_keypair(tmp_path, b"")


def test_passphrase_file(tmp_path):
    passphrase_path = tmp_path / "passphrase"
    passphrase_path.write_bytes(PASSPHRASE + b"\n")
    assert read_passphrase_file(passphrase_path) == PASSPHRASE
    passphrase_path.write_bytes(b"\n")
    with pytest.raises(KeyFileError, match="empty"):
        read_passphrase_file(passphrase_path)


def test_edited_key_id_is_refused(tmp_path):
    pair = generate_restore_keypair(tmp_path, None)
    document = json.loads(pair.public_key_path.read_text())
    document["key_id"] = "0" * 16
    pair.public_key_path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="does not match its public key"):
        load_public_key(pair.public_key_path)


def test_edited_protected_key_header_is_refused(tmp_path):
    pair = generate_restore_keypair(tmp_path, PASSPHRASE)
    document = json.loads(pair.private_key_path.read_text())
    document["kdf"]["n"] = 2**14
    pair.private_key_path.write_text(json.dumps(document))
    with pytest.raises(WrongPassphraseError):
        load_private_key(pair.private_key_path, PASSPHRASE)


def test_public_key_in_place_of_private_key(plain_pair, tmp_path):
    copied = tmp_path / "restore.key"
    copied.write_bytes(plain_pair.public_key_path.read_bytes())
    os.chmod(copied, 0o600)
    with pytest.raises(KeyFileError, match="is a restore public key"):
        load_private_key(copied, None)


def test_restore_pub_given_as_the_private_key_says_so_before_any_mode_advice(plain_pair):
    # restore.pub is 0644: the message names the mix-up, not the file mode.
    with pytest.raises(KeyFileError, match="is a restore public key") as raised:
        load_private_key(plain_pair.public_key_path, None)
    assert "chmod" not in str(raised.value)


def test_all_zero_recipient_key_fails_at_load(plain_pair, tmp_path):
    from streamd.reversible.keys.restore_keys import load_public_keys

    document = json.loads(plain_pair.public_key_path.read_text())
    zero = bytes(32)
    document["public_key"] = base64.b64encode(zero).decode()
    document["key_id"] = hashlib.sha256(zero).hexdigest()[:16]
    zero_path = tmp_path / "zero.pub"
    zero_path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="not a usable X25519 key"):
        load_public_keys([str(zero_path)])


def test_new_keys_use_scrypt_n_at_least_2_17(tmp_path):
    pair = generate_restore_keypair(tmp_path, PASSPHRASE)
    assert json.loads(pair.private_key_path.read_text())["kdf"]["n"] >= 2**17


def test_passphrase_file_readable_by_others_warns(tmp_path, caplog):
    from streamd.reversible.keys.restore_keys import read_passphrase_file

    passphrase_file = tmp_path / "pass"
    passphrase_file.write_text("secret\n")
    os.chmod(passphrase_file, 0o644)
    with caplog.at_level("WARNING"):
        assert read_passphrase_file(passphrase_file) == b"secret"
    assert "chmod 600" in caplog.text
    caplog.clear()
    os.chmod(passphrase_file, 0o600)
    with caplog.at_level("WARNING"):
        read_passphrase_file(passphrase_file)
    assert "chmod" not in caplog.text


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_public_key(tmp_path / "absent.pub")


def test_credential_reference(plain_pair, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "restore-pub").write_bytes(plain_pair.public_key_path.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert resolve_public_key_ref("credential:restore-pub") == credentials / "restore-pub"
    recipient = load_public_key_ref("credential:restore-pub")
    assert recipient.key_id == plain_pair.key_id
    assert recipient.origin == "credential:restore-pub"
    assert resolve_public_key_ref(str(plain_pair.public_key_path)) == plain_pair.public_key_path
    with pytest.raises(KeyFileError, match="plain file name"):
        resolve_public_key_ref("credential:../etc/passwd")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(KeyFileError, match="CREDENTIALS_DIRECTORY"):
        resolve_public_key_ref("credential:restore-pub")


def test_duplicate_recipient_refused(plain_pair):
    with pytest.raises(KeyFileError, match="given twice"):
        load_public_keys([plain_pair.public_key_path, str(plain_pair.public_key_path)])


def test_wrap_unwrap_several_recipients(protected_pair, plain_pair, other_pair):
    recipients = load_public_keys(
        [protected_pair.public_key_path, plain_pair.public_key_path, other_pair.public_key_path]
    )
    track_key = new_track_key()
    context = track_key_context("cam1", "epoch-1", 7)
    wrapped = wrap_track_key(track_key, recipients, context)
    assert [entry.key_id for entry in wrapped] == [recipient.key_id for recipient in recipients]
    as_json = json.loads(json.dumps([entry.to_dict() for entry in wrapped]))
    protected_private = load_private_key(protected_pair.private_key_path, PASSPHRASE)
    assert unwrap_track_key(as_json, protected_private, context) == track_key
    assert unwrap_track_key(wrapped, load_private_key(plain_pair.private_key_path, None), context) == track_key
    assert unwrap_track_key(as_json, load_private_key(other_pair.private_key_path, None), context) == track_key


def test_unknown_key_id(plain_pair, other_pair):
    wrapped = wrap_track_key(new_track_key(), [load_public_key(plain_pair.public_key_path)], b"ctx")
    with pytest.raises(UnknownKeyIdError, match=other_pair.key_id):
        unwrap_track_key(wrapped, load_private_key(other_pair.private_key_path, None), b"ctx")


def test_unwrap_with_another_context_fails(plain_pair):
    private_key = load_private_key(plain_pair.private_key_path, None)
    wrapped = wrap_track_key(new_track_key(), [private_key.public], track_key_context("cam1", "e1", 3))
    with pytest.raises(KeyUnwrapError, match="authentication failed"):
        unwrap_track_key(wrapped, private_key, track_key_context("cam1", "e1", 4))
    with pytest.raises(KeyUnwrapError, match="authentication failed"):
        unwrap_track_key(wrapped, private_key, track_key_context("cam2", "e1", 3))


def test_unwrap_tampered_ciphertext_fails(plain_pair):
    private_key = load_private_key(plain_pair.private_key_path, None)
    entry = wrap_track_key(new_track_key(), [private_key.public], b"ctx")[0]
    tampered = bytearray(entry.ciphertext)
    tampered[0] ^= 0x01
    with pytest.raises(KeyUnwrapError):
        unwrap_track_key([WrappedKey(entry.key_id, entry.ephemeral_public, bytes(tampered))], private_key, b"ctx")


def test_wrong_private_key_under_matching_key_id_fails(plain_pair, other_pair):
    private_key = load_private_key(plain_pair.private_key_path, None)
    other_private = load_private_key(other_pair.private_key_path, None)
    wrapped = wrap_track_key(new_track_key(), [other_private.public], b"ctx")
    relabelled = [WrappedKey(private_key.key_id, entry.ephemeral_public, entry.ciphertext) for entry in wrapped]
    with pytest.raises(KeyUnwrapError):
        unwrap_track_key(relabelled, private_key, b"ctx")


def test_malformed_wrapped_entry(plain_pair):
    private_key = load_private_key(plain_pair.private_key_path, None)
    entry = wrap_track_key(new_track_key(), [private_key.public], b"ctx")[0].to_dict()
    entry["epk"] = "not base64!"
    with pytest.raises(KeyUnwrapError, match="epk"):
        unwrap_track_key([entry], private_key, b"ctx")
    entry["v"] = 2
    with pytest.raises(KeyUnwrapError, match="version"):
        unwrap_track_key([entry], private_key, b"ctx")


def test_errors_are_streamd_errors():
    for error_class in (KeyFileError, KeyUnwrapError, UnknownKeyIdError, WrongPassphraseError, PassphraseRequiredError):
        assert issubclass(error_class, StreamdError)


def test_track_keys_are_random():
    assert len(new_track_key()) == 32
    assert new_track_key() != new_track_key()


def test_password_bits_stable_and_distinct():
    track_key = new_track_key()
    bits = derive_password_bits(track_key, 100)
    assert bits.shape == (100,) and bits.dtype == np.float32
    assert set(np.unique(bits).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(bits, derive_password_bits(track_key, 100))
    assert not np.array_equal(bits, derive_password_bits(new_track_key(), 100))
    # different labels give unrelated outputs: password bits are not the payload key's bits
    payload_bits = np.unpackbits(np.frombuffer(derive_payload_key(track_key), dtype=np.uint8))[:100]
    assert not np.array_equal(bits, payload_bits.astype(np.float32))
    assert derive_payload_key(track_key) == derive_payload_key(track_key)
    assert derive_payload_key(track_key) != track_key
    assert derive_password_bits(track_key, 7).shape == (7,)
    with pytest.raises(ValueError):
        derive_password_bits(track_key, 0)
    with pytest.raises(ValueError):
        derive_payload_key(b"short")
