"""Encryption at rest and the blind index for phone numbers.

Each ``HOTLINE_DATA_KEY`` is a 32-byte master key. From it HKDF derives two subkeys: one for
AES-256-GCM (the AEAD that seals numbers and pending texts) and one for HMAC-SHA256 (the keyed
hash, or blind index, by which rows are looked up without decrypting). The first key seals;
every key in the list opens and hashes, so old rows stay readable while a rotation runs
(``hotline keys rotate`` re-seals and re-hashes them under the first key).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE = 12


class DecryptionError(ValueError):
    """No configured data key opens this value (wrong key, or the value was tampered with)."""


@dataclass(frozen=True)
class _Key:
    key_id: bytes  # 4 bytes naming the master key inside each sealed value
    aead: AESGCM
    mac_key: bytes


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


class Vault:
    """Seals and opens secrets and computes blind indexes with the configured data keys."""

    def __init__(self, master_keys: tuple[bytes, ...]) -> None:
        if not master_keys:
            raise ValueError("at least one data key is required")
        self._keys = [
            _Key(
                key_id=hashlib.sha256(k).digest()[:4],
                aead=AESGCM(_derive(k, b"hotline seal v1")),
                mac_key=_derive(k, b"hotline blind index v1"),
            )
            for k in master_keys
        ]

    def seal(self, plaintext: str, context: bytes = b"") -> bytes:
        """Encrypt ``plaintext`` under the first key; ``context`` is bound as associated data."""
        key = self._keys[0]
        nonce = os.urandom(_NONCE)
        return _VERSION + key.key_id + nonce + key.aead.encrypt(nonce, plaintext.encode(), context)

    def open(self, sealed: bytes, context: bytes = b"") -> str:
        """Decrypt a value sealed by any configured key; raise DecryptionError otherwise."""
        if len(sealed) < 1 + 4 + _NONCE or sealed[:1] != _VERSION:
            raise DecryptionError("not a sealed value")
        key_id, nonce, body = sealed[1:5], sealed[5 : 5 + _NONCE], sealed[5 + _NONCE :]
        for key in self._keys:
            if key.key_id == key_id:
                try:
                    return key.aead.decrypt(nonce, body, context).decode()
                except InvalidTag:
                    break
        raise DecryptionError("no data key opens this value")

    def is_current(self, sealed: bytes) -> bool:
        """True when ``sealed`` is under the first (current) key."""
        return sealed[1:5] == self._keys[0].key_id

    def blind_index(self, value: str) -> str:
        """The keyed hash of ``value`` under the current key (hex), for storing."""
        return self._mac(self._keys[0], value)

    def blind_indexes(self, value: str) -> list[str]:
        """The keyed hash under every configured key, for lookups during a rotation."""
        return [self._mac(k, value) for k in self._keys]

    @property
    def rotating(self) -> bool:
        """More than one key is configured: rows may be under different keys' indexes."""
        return len(self._keys) > 1

    def pseudonym(self, value: str) -> str:
        """A short stable name for logs (``p-3f9a1c2b``); not reversible without the key."""
        return "p-" + self._mac(self._keys[0], "log:" + value)[:8]

    @staticmethod
    def _mac(key: _Key, value: str) -> str:
        return hmac.new(key.mac_key, value.encode(), hashlib.sha256).hexdigest()
