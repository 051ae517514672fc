"""Signed events: the device's Ed25519 key, ``key_id``, signing and verifying event dicts.

It signs bytes and knows no faces (stdlib and ``cryptography`` only), so the lock controller, which runs
with no model, uses it too.

The scheme (docs/DOOR.md): an event carries ``key_id`` (the first 16 hex digits of the sha256 of the
raw 32-byte public key) and ``sig``, the base64 (standard alphabet, padded) Ed25519 signature over the
event's canonical JSON: every field except ``sig`` (``key_id`` included), as
``json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8.

The private key is made at first start in the state directory (``signing-key.pem``, PKCS#8 PEM, mode
0600), or read from a systemd credential (``$CREDENTIALS_DIRECTORY/signing-key``, PEM or the raw 32
bytes) when one is given: then nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SigningError
from .statedir import _transient as transient  # a full disk, an I/O error: the daemon retries

KEY_FILE = "signing-key.pem"
CREDENTIAL_NAME = "signing-key"
SIG_FIELD, KEY_ID_FIELD = "sig", "key_id"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class SignatureError(Exception):
    """An event fails verification; ``reason`` is one word: unsigned, unknown_key, bad_signature."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def canonical(event: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: every field except ``sig``, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in event.items() if k != SIG_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(*_RAW)


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256(raw 32-byte public key)."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """A public key from the one-line base64 of its raw 32 bytes (``edge-verify keys show``)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(f"public key {text[:60]!r} is not base64") from None
    if len(raw) != 32:
        raise SigningError(f"public key {text[:60]!r} is {len(raw)} bytes, not the 32 of an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)


class Signer:
    """Signs events with one Ed25519 private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, state_dir: str | Path, credentials_dir: str | None = None) -> Signer:
        """The device key: from ``$CREDENTIALS_DIRECTORY/signing-key`` when present, else
        ``state_dir/signing-key.pem``, made (0600) when missing. ``SigningError`` when unreadable."""
        creds = os.environ.get("CREDENTIALS_DIRECTORY") if credentials_dir is None else credentials_dir
        if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
            return cls(_read_private(Path(creds) / CREDENTIAL_NAME))
        path = Path(state_dir) / KEY_FILE
        if path.is_file() and path.stat().st_size > 0:
            return cls(_read_private(path))
        signer = cls.generate()
        pem = signer._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        tmp = path.with_name(path.name + ".tmp")
        try:  # whole or absent: written aside (0600), synced, then renamed into place
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            with os.fdopen(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SigningError(f"cannot write the device key {path}: {e.strerror or e}",
                               transient=transient(e)) from None
        return signer

    def public_b64(self) -> str:
        return base64.b64encode(raw_public(self.public)).decode("ascii")

    def sign(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``event`` with ``key_id`` and ``sig`` (any old ``sig`` is replaced)."""
        out = {k: v for k, v in event.items() if k != SIG_FIELD}
        out[KEY_ID_FIELD] = self.key_id
        out[SIG_FIELD] = base64.b64encode(self._private.sign(canonical(out))).decode("ascii")
        return out


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SigningError(f"cannot read the device key {path}: {e.strerror or e}", transient=transient(e)) from None
    try:
        if len(data) == 32:
            return Ed25519PrivateKey.from_private_bytes(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningError(f"device key {path} is not an unencrypted PEM or raw Ed25519 key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"device key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def verify(event: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Check ``event``'s signature against ``keys`` ({key_id: public key}, the keys trusted for the
    device the event claims to come from). Returns the key_id; raises :class:`SignatureError`."""
    sig, kid = event.get(SIG_FIELD), event.get(KEY_ID_FIELD)
    if not isinstance(sig, str) or not isinstance(kid, str):
        raise SignatureError("unsigned", "no sig or key_id")
    key = keys.get(kid)
    if key is None:
        raise SignatureError("unknown_key", f"key_id {kid[:32]!r} is not trusted for this device")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("bad_signature", "sig is not base64") from None
    try:
        key.verify(raw, canonical(event))
    except (InvalidSignature, ValueError, TypeError):
        raise SignatureError("bad_signature", f"signature does not match key {kid}") from None
    return kid
