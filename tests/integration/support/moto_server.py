#!/usr/bin/env python3
"""moto's KMS server on a free loopback port, with Sign fixed for DIGEST.

Usage: moto_server.py   (prints "PORT <n>" once listening, then serves)

Why the patch: AWS KMS Sign with MessageType=DIGEST treats Message as the
already-computed hash and signs it as such (prehashed). moto 5.x ignores
MessageType (its docs say DIGEST is not implemented) and signs SHA-256 of
the digest instead, i.e. a signature over the wrong input. moto's own Verify
makes the same mistake, so it agrees with itself; only an independent
verification (as the tests do, with the public key and jsonwebtoken) shows
the fault. The service must send DIGEST (RAW is limited to 4096 bytes), so
the tests need a KMS stand-in that behaves like AWS here: this wrapper makes
Sign and Verify honour DIGEST by signing/verifying the given bytes as a
prehashed digest of the algorithm's hash, and refuses a digest of the wrong
length as AWS does.
"""

import sys
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.kms import responses as kms_responses
from moto.kms import utils as kms_utils
from moto.kms.exceptions import ValidationException
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

_request = threading.local()


def _digest_mode() -> bool:
    return getattr(_request, "digest", False)


def _with_message_type(original):
    def handler(self):
        _request.digest = self._get_param("MessageType") == "DIGEST"
        try:
            return original(self)
        finally:
            _request.digest = False

    return handler


def _prehashed(hash_algorithm, message):
    if len(message) != hash_algorithm.digest_size:
        raise ValidationException(
            "Digest is invalid length for algorithm " + hash_algorithm.name
        )
    return utils.Prehashed(hash_algorithm)


def _rsa_sign(original):
    def sign(self, message, signing_algorithm):
        if not _digest_mode():
            return original(self, message, signing_algorithm)
        kms_utils.validate_signing_algorithm(
            signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms()
        )
        pad, hash_algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
        return self.private_key.sign(message, pad, _prehashed(hash_algorithm, message))

    return sign


def _rsa_verify(original):
    def verify(self, message, signature, signing_algorithm):
        if not _digest_mode():
            return original(self, message, signature, signing_algorithm)
        pad, hash_algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
        try:
            self.private_key.public_key().verify(
                signature, message, pad, _prehashed(hash_algorithm, message)
            )
            return True
        except InvalidSignature:
            return False

    return verify


def _ec_sign(original):
    def sign(self, message, signing_algorithm):
        if not _digest_mode():
            return original(self, message, signing_algorithm)
        kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
        hash_algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
        return self.private_key.sign(message, ec.ECDSA(_prehashed(hash_algorithm, message)))

    return sign


def _ec_verify(original):
    def verify(self, message, signature, signing_algorithm):
        if not _digest_mode():
            return original(self, message, signature, signing_algorithm)
        hash_algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
        try:
            self.private_key.public_key().verify(
                signature, message, ec.ECDSA(_prehashed(hash_algorithm, message))
            )
            return True
        except InvalidSignature:
            return False

    return verify


def patch():
    kms_responses.KmsResponse.sign = _with_message_type(kms_responses.KmsResponse.sign)
    kms_responses.KmsResponse.verify = _with_message_type(kms_responses.KmsResponse.verify)
    kms_utils.RSAPrivateKey.sign = _rsa_sign(kms_utils.RSAPrivateKey.sign)
    kms_utils.RSAPrivateKey.verify = _rsa_verify(kms_utils.RSAPrivateKey.verify)
    kms_utils.ECDSAPrivateKey.sign = _ec_sign(kms_utils.ECDSAPrivateKey.sign)
    kms_utils.ECDSAPrivateKey.verify = _ec_verify(kms_utils.ECDSAPrivateKey.verify)


def main():
    patch()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
