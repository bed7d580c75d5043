"""Encrypted payloads: an AES-256-GCM payload codec over a ring of keys, so case data at rest in
Temporal (starts, signals, updates, results, the UI's summary and details) is unreadable without one.

    ring = KeyRing.parse("k2:<base64 of 32 bytes>,k1:<...>")     # HITL_CODEC_KEYS: the first one encrypts
    client = await Client.connect(target, data_converter=encrypted_converter(pydantic_data_converter, ring))
    cases = await CaseClient.connect(target, codec=EncryptionCodec(ring))

Every encoded payload names its key (metadata `encryption-key-id`) and carries a random 96-bit
nonce, so a new key can take over encrypting while payloads written under the old ones still decrypt
(rotation: put the new key first, keep the old ones until no history needs them). Payloads that are
not `binary/encrypted` decode unchanged: histories written before encryption was turned on, and
input from tools that send plain JSON (the Web UI without the codec server, `temporal workflow signal`).

Search attributes, workflow IDs and failure messages are not payloads the codec sees: they stay plain.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, GCM's own size
TAG_BYTES = 16
# Key ids are shown in errors and stored in every payload: a short plain name.
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_KEYS = 32
# The ciphertext is bound to its key id (and this scheme): a payload relabelled with another id fails.
_AAD_PREFIX = b"hitl-temporal/aes-256-gcm/v1:"
_log = logging.getLogger(__name__)


class CodecKeyError(ValueError):
    """A key ring that cannot be used; the message names the entry (never key material), one line."""


class PayloadDecryptError(ValueError):
    """An encrypted payload that cannot be decrypted: its key is not in the ring, or it was altered."""


@dataclasses.dataclass(frozen=True, repr=False)
class KeyRing:
    """Encryption keys by id; `current` encrypts, every key decrypts."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecKeyError("no keys")
        if self.current not in self.keys:
            raise CodecKeyError(f"the current key {self.current!r} is not in the ring")
        for key_id, key in self.keys.items():
            if not KEY_ID.fullmatch(key_id):
                raise CodecKeyError(f"key id {key_id[:64]!r} is not a plain name (letters, digits, . _ -, at most 64)")
            if len(key) != KEY_BYTES:
                raise CodecKeyError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")

    def __repr__(self) -> str:  # never the keys
        return f"KeyRing(current={self.current!r}, ids={list(self.keys)!r})"

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """`id:<base64 of 32 bytes>` entries separated by commas, the first one current (HITL_CODEC_KEYS).

        Raises:
            CodecKeyError: empty, an entry without an id or key, a bad id, bad base64, a key that is
                not 32 bytes, a duplicate id, or too many keys.
        """
        if not text.strip():
            raise CodecKeyError("is empty; give id:<base64 of 32 bytes>[,id:<...>], or unset it to leave payloads unencrypted")
        keys: dict[str, bytes] = {}
        entries = text.split(",")
        if len(entries) > MAX_KEYS:
            raise CodecKeyError(f"names {len(entries)} keys; at most {MAX_KEYS}")
        for position, entry in enumerate(entries, start=1):
            key_id, colon, encoded = entry.strip().partition(":")
            key_id, encoded = key_id.strip(), encoded.strip()
            if not key_id or not colon or not encoded:
                raise CodecKeyError(f"entry {position} is not id:<base64 of 32 bytes>")
            if not KEY_ID.fullmatch(key_id):
                raise CodecKeyError(f"entry {position}: the key id is not a plain name (letters, digits, . _ -, at most 64)")
            if key_id in keys:
                raise CodecKeyError(f"key id {key_id!r} is given twice")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise CodecKeyError(f"key {key_id!r} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise CodecKeyError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES} (openssl rand -base64 32)")
            keys[key_id] = key
        return cls(keys=keys, current=next(iter(keys)))


def new_key() -> str:
    """A fresh random key, base64, as HITL_CODEC_KEYS takes it (`openssl rand -base64 32` does the same)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole payload (its metadata too, so even its encoding is hidden).

    `lenient`, for workers and replayers only: a payload that does not decrypt is handed on as it is
    (still `binary/encrypted`) instead of failing. Anyone who can signal a case can send such a
    payload; raised, the error would fail the workflow task on every replay and wedge the case. Handed
    on, the workflow's guard refuses it as input that is not JSON, and the case waits on. Nothing
    unauthenticated is ever decrypted either way."""

    def __init__(self, ring: KeyRing, *, lenient: bool = False):
        self.ring = ring
        self.lenient = lenient
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    def for_worker(self) -> EncryptionCodec:
        """The same keys, lenient (see the class docstring)."""
        return self if self.lenient else EncryptionCodec(self.ring, lenient=True)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self.lenient:
            return [self.decrypt(payload) for payload in payloads]
        decoded = []
        for payload in payloads:
            try:
                decoded.append(self.decrypt(payload))
            except PayloadDecryptError as err:
                _log.warning("handing on an undecryptable payload for the workflow to refuse: %s", err)
                decoded.append(payload)
        return decoded

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.ring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), _AAD_PREFIX + key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload; a payload that is not encrypted is returned as it is."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptError(f"an encrypted payload names no key (no {KEY_ID_METADATA} metadata)")
        key_id = raw_id.decode("utf-8", "replace")
        shown = key_id[:64]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self.ring.keys)
            raise PayloadDecryptError(f"payload encrypted with key {shown!r}, which is not among the keys configured ({known})")
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptError(f"payload encrypted with key {shown!r} is truncated ({len(payload.data)} bytes)")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _AAD_PREFIX + key_id.encode())
        except InvalidTag:
            raise PayloadDecryptError(
                f"payload encrypted with key {shown!r} does not authenticate: "
                f"it was altered, or key {shown!r} is not the one it was written with"
            ) from None
        return Payload.FromString(plain)


class NoKeysCodec(PayloadCodec):
    """For a client with no keys: plain payloads as they are, and an encrypted one refused in one line
    (PayloadDecryptError) rather than the converter's "Unknown payload encoding" KeyError."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                key_id = payload.metadata.get(KEY_ID_METADATA, b"?").decode("utf-8", "replace")[:64]
                raise PayloadDecryptError(
                    f"the case data is encrypted (key {key_id!r}) and no keys are configured: set HITL_CODEC_KEYS"
                )
        return list(payloads)


def encrypted_converter(converter: DataConverter, codec: PayloadCodec | KeyRing | None) -> DataConverter:
    """`converter` with the codec (or an EncryptionCodec over the ring); unchanged for None."""
    if codec is None:
        return converter
    if isinstance(codec, KeyRing):
        codec = EncryptionCodec(codec)
    return dataclasses.replace(converter, payload_codec=codec)
