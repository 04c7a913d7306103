#!/usr/bin/env python3
"""Known-answer values for tests/unit/test_noise.c: a WireGuard handshake
with fixed keys, ephemerals, timestamp and indices, computed from the
WireGuard paper (section 5.4) with Python's hashlib.blake2s and the
`cryptography` package (X25519, ChaCha20-Poly1305). Independent of our C code;
prints C initialisers."""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization

RAW = serialization.Encoding.Raw


def HASH(*parts):
    return hashlib.blake2s(b"".join(parts)).digest()


def MAC(key, data):
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def HMAC(key, data):
    return hmac.new(key, data, hashlib.blake2s).digest()


def KDF(n, key, data):
    t0 = HMAC(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = HMAC(t0, prev + bytes([i]))
        out.append(prev)
    return out


def clamp(k):
    k = bytearray(k)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


def DH(priv, p):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(p))


def AEAD(key, counter, plain, ad):
    nonce = b"\0" * 4 + struct.pack("<Q", counter)
    return ChaCha20Poly1305(key).encrypt(nonce, plain, ad)


def seq(start, n=32):
    return bytes((start + i) & 0xFF for i in range(n))


S_i = clamp(seq(0x10))   # initiator static private
S_r = clamp(seq(0x40))   # responder static private
E_i = clamp(seq(0x70))   # initiator ephemeral private
E_r = clamp(seq(0xA0))   # responder ephemeral private
PSK = seq(0xD0)
# TAI64N of 2020-01-01T00:00:00Z, nanoseconds whitened (multiple of 2^24)
TS = struct.pack(">QI", 0x400000000000000A + 1577836800, 5 << 24)
I_i, I_r = 0x04030201, 0x0D0C0B0A

S_i_pub, S_r_pub = pub(S_i), pub(S_r)

# Initiation
C = HASH(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
H = HASH(C, b"WireGuard v1 zx2c4 Jason@zx2c4.com")
H = HASH(H, S_r_pub)
E_i_pub = pub(E_i)
(C,) = KDF(1, C, E_i_pub)
H = HASH(H, E_i_pub)
C, k = KDF(2, C, DH(E_i, S_r_pub))
enc_static = AEAD(k, 0, S_i_pub, H)
H = HASH(H, enc_static)
C, k = KDF(2, C, DH(S_i, S_r_pub))
enc_ts = AEAD(k, 0, TS, H)
H = HASH(H, enc_ts)
init = struct.pack("<I", 1) + struct.pack("<I", I_i) + E_i_pub + enc_static + enc_ts
init += MAC(HASH(b"mac1----", S_r_pub), init)
init += b"\0" * 16
assert len(init) == 148

# Response
E_r_pub = pub(E_r)
(C,) = KDF(1, C, E_r_pub)
H = HASH(H, E_r_pub)
(C,) = KDF(1, C, DH(E_r, E_i_pub))
(C,) = KDF(1, C, DH(E_r, S_i_pub))
C, tau, k = KDF(3, C, PSK)
H = HASH(H, tau)
enc_nothing = AEAD(k, 0, b"", H)
H = HASH(H, enc_nothing)
resp = struct.pack("<I", 2) + struct.pack("<I", I_r) + struct.pack("<I", I_i) + E_r_pub + enc_nothing
resp += MAC(HASH(b"mac1----", S_i_pub), resp)
resp += b"\0" * 16
assert len(resp) == 92

T_send_i, T_recv_i = KDF(2, C, b"")

# Transport: initiator -> responder, counter 0, a 20-byte payload padded to 32
payload = bytes(range(20)) + b"\0" * 12
data = struct.pack("<I", 4) + struct.pack("<I", I_r) + struct.pack("<Q", 0) + AEAD(T_send_i, 0, payload, b"")


def c_array(name, b):
    lines = []
    for i in range(0, len(b), 12):
        lines.append("\t" + " ".join("0x%02x," % x for x in b[i:i + 12]))
    return "static const uint8_t %s[%d] = {\n%s\n};" % (name, len(b), "\n".join(lines))


for name, val in [("kat_static_i", S_i), ("kat_static_r", S_r), ("kat_ephemeral_r", E_r),
                  ("kat_psk", PSK), ("kat_initiation", init), ("kat_response", resp),
                  ("kat_send_i", T_send_i), ("kat_recv_i", T_recv_i), ("kat_data", data)]:
    print(c_array(name, val))
print("#define KAT_INDEX_I 0x%08xU" % I_i)
print("#define KAT_INDEX_R 0x%08xU" % I_r)
