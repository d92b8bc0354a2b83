#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the three fuzz targets.

The committed corpus (fuzz/corpus/<target>/) started from these seeds and
was then grown by fuzzing and minimised with `cargo fuzz cmin`; rerun this
only to rebuild the seeds from scratch (it generates fresh keys, so the
files change every time). Needs Python 3 and `cryptography`
(`pip install cryptography`).

    python3 fuzz/make_seeds.py [OUTPUT_DIR]   # default: fuzz/corpus

Key-parser inputs start with one selector byte (see
fuzz/src/invariants.rs, `check_key_parser`): bit 0 chooses ES256 (1) or
RS256 (0), bits 1-2 the key source, bits 3-5 the maximum TTL index
(4 = 3600 s). The rest of the input is the key text.
"""

import base64
import hashlib
import json
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ROOT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "corpus"

RS256 = 0x20  # RS256, source env, max TTL 3600
ES256 = 0x21  # ES256, source env, max TTL 3600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(value: int, length: int | None = None) -> str:
    length = length or (value.bit_length() + 7) // 8 or 1
    return b64(value.to_bytes(length, "big"))


def ec_jwk(kid=None, activate_at=None):
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": uint(numbers.public_numbers.x, 32),
        "y": uint(numbers.public_numbers.y, 32),
        "d": uint(numbers.private_value, 32),
    }
    if kid is not None:
        jwk["kid"] = kid
    jwk["alg"] = "ES256"
    jwk["use"] = "sig"
    if activate_at is not None:
        jwk["activate_at"] = activate_at
    return key, jwk


def rsa_jwk(kid=None, bits=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    n = key.private_numbers()
    jwk = {
        "kty": "RSA",
        "n": uint(n.public_numbers.n),
        "e": uint(n.public_numbers.e),
        "d": uint(n.d),
        "p": uint(n.p),
        "q": uint(n.q),
        "dp": uint(n.dmp1),
        "dq": uint(n.dmq1),
        "qi": uint(n.iqmp),
    }
    if kid is not None:
        jwk["kid"] = kid
    jwk["alg"] = "RS256"
    jwk["use"] = "sig"
    return key, jwk


def pem(key, fmt) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    ).decode()


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def write(target: str, name: str, data: bytes) -> None:
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def key_seed(name: str, selector: int, text: str) -> None:
    write("key_parser", f"seed-{name}", bytes([selector]) + text.encode())


def key_parser_seeds() -> None:
    ec_key, ec_one = ec_jwk(kid="es256-20261123-a1b2c3")
    rsa_key, rsa_one = rsa_jwk(kid="rs256-20261123-d4e5f6")
    key_seed("ec-jwk", ES256, compact(ec_one))
    key_seed("rsa-jwk", RS256, compact(rsa_one))
    without_kid = {k: v for k, v in ec_one.items() if k != "kid"}
    key_seed("ec-jwk-thumbprint-kid", ES256 | 0x02, json.dumps(without_kid, indent=2))
    key_seed("ec-jwk-for-rs256", RS256, compact(ec_one))
    key_seed("rsa-jwk-for-es256", ES256, compact(rsa_one))

    # A ring mid-rotation: always-active, Unix-seconds and RFC 3339 activations.
    ring = {
        "keys": [
            ec_jwk(kid="old")[1],
            ec_jwk(kid="new", activate_at=1_795_392_000)[1],
            ec_jwk(kid="next", activate_at="2026-12-23T00:00:00Z")[1],
        ]
    }
    key_seed("ec-ring-rotation", ES256, json.dumps(ring, indent=1))
    crowded = {"keys": [ec_jwk(kid=f"k{i}", activate_at=i * 10)[1] for i in range(9)]}
    key_seed("ec-ring-nine-keys", ES256 | 0x08, compact(crowded))
    future = {"keys": [ec_jwk(kid="later", activate_at=18_446_744_073_709_551_615)[1]]}
    key_seed("ec-ring-nothing-active", ES256, compact(future))
    key_seed("ec-ring-duplicate-kid", ES256, compact({"keys": [ec_one, ec_one]}))
    for label, at in [("negative", -5), ("words", "tomorrow"), ("fraction", 1.5), ("object", {})]:
        bad = dict(ec_one, activate_at=at)
        key_seed(f"ec-ring-bad-activation-{label}", ES256, compact({"keys": [bad]}))

    # PEM in every supported container, and mixtures.
    ec_pkcs8 = pem(ec_key, serialization.PrivateFormat.PKCS8)
    ec_sec1 = pem(ec_key, serialization.PrivateFormat.TraditionalOpenSSL)
    rsa_pkcs8 = pem(rsa_key, serialization.PrivateFormat.PKCS8)
    rsa_pkcs1 = pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    key_seed("ec-pem-pkcs8", ES256, ec_pkcs8)
    key_seed("ec-pem-sec1", ES256 | 0x02, ec_sec1)
    key_seed("rsa-pem-pkcs8", RS256 | 0x02, rsa_pkcs8)
    key_seed("rsa-pem-pkcs1", RS256, rsa_pkcs1)
    other_ec = pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    key_seed("ec-pem-two-blocks", ES256, ec_pkcs8 + other_ec)
    key_seed("ec-pem-same-key-twice", ES256, ec_pkcs8 + "\n" + ec_sec1)
    key_seed("rsa-pem-for-es256", ES256, rsa_pkcs1)
    key_seed("ec-pem-for-rs256", RS256, ec_sec1)
    p384 = pem(ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.PKCS8)
    key_seed("ec-pem-p384", ES256, p384)
    key_seed("pem-public-key", RS256, "-----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----\n")
    key_seed(
        "pem-encrypted",
        RS256,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAQID\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    key_seed("pem-undecodable", RS256, "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n")
    key_seed("pem-no-end", ES256, "-----BEGIN EC PRIVATE KEY-----\nAQID\n")
    key_seed("pem-end-without-dashes", ES256, "-----BEGIN X-----\n-----END")

    # JWKs that must be refused, each for one reason.
    bad_jwks = {
        "public-only": {k: v for k, v in ec_one.items() if k != "d"},
        "p384-curve": dict(ec_one, crv="P-384"),
        "short-x": dict(ec_one, x="AQAB"),
        "mismatched-d": dict(ec_one, d=ec_jwk()[1]["d"]),
        "alg-rs512": dict(ec_one, alg="RS512"),
        "use-enc": dict(ec_one, use="enc"),
        "empty-kid": dict(ec_one, kid=""),
        "numeric-kid": dict(ec_one, kid=7),
        "d-pasted-into-kty": dict(ec_one, kty=ec_one["d"]),
        "d-not-base64": dict(ec_one, d="***"),
        "d-padded": dict(ec_one, d=ec_one["d"] + "="),
        "oct-key": {"kty": "oct", "k": "c2VjcmV0", "d": "c2VjcmV0"},
    }
    for name, jwk in bad_jwks.items():
        key_seed(f"ec-{name}", ES256, compact(jwk))
    key_seed("rsa-multi-prime", RS256, compact(dict(rsa_one, oth=[])))
    key_seed("rsa-1024-bit-modulus", RS256, compact(dict(rsa_one, n=b64(b"\xc5" * 128))))
    key_seed("rsa-missing-qi", RS256, compact({k: v for k, v in rsa_one.items() if k != "qi"}))
    for name, text in {
        "empty-set": '{"keys":[]}',
        "keys-not-array": '{"keys":{}}',
        "set-member-not-object": '{"keys":[1]}',
        "array": "[1]",
        "words": "not a key",
        "broken-json": '{"d": "c2VjcmV0c2VjcmV0c2VjcmV0" oops}',
        "empty": "",
        "leading-whitespace-object": " \n\t{}",
    }.items():
        key_seed(name, ES256, text)


def mint_request_seeds() -> None:
    bodies = {
        "docs-minimal": {"sender": "agent://risk"},
        "docs-full": {
            "sender": "agent://risk",
            "scopes": {
                "can_start_sessions": True,
                "can_manage_mode_registry": False,
                "is_observer": False,
                "allowed_modes": ["macp.mode.decision.v1"],
                "max_open_sessions": 1,
            },
            "ttl_seconds": 600,
        },
        "null-ttl": {"sender": "a", "ttl_seconds": None},
        "unicode-sender": {"sender": "agent://r\u00e9sum\u00e9/\u4e2d"},
    }
    for name, body in bodies.items():
        write("mint_request", f"seed-{name}", json.dumps(body).encode())
    raw = {
        "docs-fractional": '{"sender":"agent://risk","scopes":{"max_open_sessions":3.0},"ttl_seconds":1.5}',
        "padded-sender": '{"sender":"  agent://a \\t"}',
        "blank-sender": '{"sender":"\\n\\t\\u00a0\\ufeff\\u2028\\u3000"}',
        "nel-sender": '{"sender":"\\u000b\\u001c"}',
        "duplicate-sender": '{"sender":"a","sender":"b"}',
        "tiny-ttl": '{"sender":"a","ttl_seconds":5e-324}',
        "huge-ttl": '{"sender":"a","ttl_seconds":1e300}',
        "ttl-just-under-max": '{"sender":"a","ttl_seconds":3599.0000001}',
        "ttl-big-integer": '{"sender":"a","ttl_seconds":18446744073709551615}',
        "ttl-negative-zero": '{"sender":"a","ttl_seconds":-0.0}',
        "ttl-string": '{"sender":"a","ttl_seconds":"60"}',
        "scopes-null": '{"sender":"a","scopes":null}',
        "scopes-array": '{"sender":"a","scopes":[]}',
        "order-check": '{"scopes":1,"ttl_seconds":0}',
        "nested-scopes": '{"sender":"a","scopes":{"n":{"m":[1.0,-0.0,1e2,2.5,{"k":1e19}]}},"ttl_seconds":60}',
        "not-json": "sender=a",
        "trailing-comma": '{"sender":"a",}',
        "array-body": "[]",
        "string-body": '"agent://a"',
        "empty": "",
        "lone-surrogate": '{"sender":"\\ud800"}',
        "out-of-range-number": '{"sender":"a","ttl_seconds":1e400}',
    }
    for name, body in raw.items():
        write("mint_request", f"seed-{name}", body.encode())
    write("mint_request", "seed-invalid-utf8", b'{"sender":"\xff\xfe"}')


def scopes_seeds() -> None:
    raw = {
        "unit-test": '{"zeta": 1, "max_open_sessions": 3.0, "allowed_modes": [], "label": "",'
        ' "is_observer": false, "nested": {"n": [1.0, 2.5, -0.0, 1e2]},'
        ' "big": 1e19, "ratio": 0.25, "none": null, "neg": -4.0}',
        "limits": '{"a": 9223372036854775807.0, "b": -9223372036854775808.0, "c": 9223372036854774784.0,'
        ' "d": 18446744073709551615.0, "e": 1.8446744073709552e19, "f": -1.8446744073709552e19,'
        ' "g": 4503599627370495.5, "h": 9007199254740993}',
        "tiny-and-huge": '{"a": 5e-324, "b": 2.2250738585072014e-308, "c": 1.7976931348623157e308,'
        ' "d": -1e-400, "e": 1e-7, "f": 123456789012345678901234567890}',
        "deep": '{"a":' + "[" * 60 + "1.0" + "]" * 60 + "}",
        "duplicate-keys": '{"a": 1.0, "b": 2, "a": 3.5}',
        "unicode-keys": '{"\\u00e9": 1.0, "": 2.0, "\\ud83d\\ude00": [0.0]}',
        "runtime-shape": '{"can_start_sessions": true, "allowed_modes": ["macp.mode.decision.v1"],'
        ' "max_open_sessions": 1.0, "is_observer": false}',
        "empty": "{}",
    }
    for name, body in raw.items():
        write("scopes", f"seed-{name}", body.encode())
    # Byte-built maps (not JSON): see `scopes_from_bytes`.
    write("scopes", "seed-bytes-floats", bytes([3, 1, 0x61, 6, 6, 1, 0x62, 4]) + (2.0**63).hex().encode()[:8])
    write("scopes", "seed-bytes-nested", bytes([2, 1, 0x6E, 9, 2, 1, 0x78, 6, 8, 1, 0x79, 5]) + b"\xff" * 8)


if __name__ == "__main__":
    key_parser_seeds()
    mint_request_seeds()
    scopes_seeds()
    print(f"seeds written under {ROOT}")
