"""Minimal, independent RFC 9180 implementation of exactly one suite:
mode_base, DHKEM(P-256, HKDF-SHA256) (0x0010), HKDF-SHA256 (0x0001),
AES-256-GCM (0x0002). Written from the RFC text with hashlib/hmac and the
`cryptography` package's raw ECDH and AES-GCM, so the check scripts can
compare pyhpke against a second implementation. For tests only.
"""
import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEM_ID, KDF_ID, AEAD_ID = 0x0010, 0x0001, 0x0002
SUITE_KEM = b"KEM" + KEM_ID.to_bytes(2, "big")
SUITE_HPKE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
NSECRET, NK, NN, NH = 32, 32, 12, 32


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def derive_key_pair(ikm: bytes):
    """RFC 9180 §7.1.3 DeriveKeyPair for P-256. Returns (sk 32 bytes, pk 65 bytes)."""
    dkp_prk = labeled_extract(SUITE_KEM, b"", b"dkp_prk", ikm)
    for counter in range(256):
        cand = bytearray(labeled_expand(SUITE_KEM, dkp_prk, b"candidate", bytes([counter]), 32))
        cand[0] &= 0xFF
        sk = int.from_bytes(cand, "big")
        if 0 < sk < P256_N:
            priv = ec.derive_private_key(sk, ec.SECP256R1())
            return sk.to_bytes(32, "big"), pk_bytes(priv.public_key())
    raise ValueError("DeriveKeyPairError")


def pk_bytes(pub) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _dh(sk: bytes, pk: bytes) -> bytes:
    priv = ec.derive_private_key(int.from_bytes(sk, "big"), ec.SECP256R1())
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk)
    return priv.exchange(ec.ECDH(), pub)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = labeled_extract(SUITE_KEM, b"", b"eae_prk", dh)
    return labeled_expand(SUITE_KEM, eae_prk, b"shared_secret", kem_context, NSECRET)


def encap_deterministic(pkR: bytes, skE: bytes):
    pkE = pk_bytes(ec.derive_private_key(int.from_bytes(skE, "big"), ec.SECP256R1()).public_key())
    shared = _extract_and_expand(_dh(skE, pkR), pkE + pkR)
    return shared, pkE


def decap(enc: bytes, skR: bytes) -> bytes:
    pkR = pk_bytes(ec.derive_private_key(int.from_bytes(skR, "big"), ec.SECP256R1()).public_key())
    return _extract_and_expand(_dh(skR, enc), enc + pkR)


class Context:
    def __init__(self, shared_secret: bytes, info: bytes):
        psk_id_hash = labeled_extract(SUITE_HPKE, b"", b"psk_id_hash", b"")
        info_hash = labeled_extract(SUITE_HPKE, b"", b"info_hash", info)
        self.key_schedule_context = bytes([0]) + psk_id_hash + info_hash
        self.secret = labeled_extract(SUITE_HPKE, shared_secret, b"secret", b"")
        ksc = self.key_schedule_context
        self.key = labeled_expand(SUITE_HPKE, self.secret, b"key", ksc, NK)
        self.base_nonce = labeled_expand(SUITE_HPKE, self.secret, b"base_nonce", ksc, NN)
        self.exporter_secret = labeled_expand(SUITE_HPKE, self.secret, b"exp", ksc, NH)
        self.seq = 0

    def nonce(self, seq: int) -> bytes:
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq.to_bytes(NN, "big")))

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        ct = AESGCM(self.key).encrypt(self.nonce(self.seq), pt, aad)
        self.seq += 1
        return ct

    def open(self, aad: bytes, ct: bytes) -> bytes:
        pt = AESGCM(self.key).decrypt(self.nonce(self.seq), ct, aad)
        self.seq += 1
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return labeled_expand(SUITE_HPKE, self.exporter_secret, b"sec", exporter_context, length)
