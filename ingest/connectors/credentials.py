"""Connector credentials, encrypted at rest with Fernet.

The key is derived (HKDF-SHA256) from FINOPS_ENCRYPTION_KEY when set, else from SECRET_KEY, so a
database dump alone never reveals a provider admin key.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

KEY_DERIVATION_INFO = b"finops connector credentials v1"


class CredentialsUnreadable(Exception):
    pass


def _fernet() -> Fernet:
    secret = (
        getattr(settings, "FINOPS_ENCRYPTION_KEY", None)
        or os.environ.get("FINOPS_ENCRYPTION_KEY")
        or settings.SECRET_KEY
    )
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_DERIVATION_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def credentials_encrypt(*, credentials: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()


def credentials_decrypt(*, encrypted: str) -> dict[str, str]:
    try:
        return json.loads(_fernet().decrypt(encrypted.encode()))
    except InvalidToken:
        raise CredentialsUnreadable(
            "the stored credentials cannot be decrypted: SECRET_KEY or FINOPS_ENCRYPTION_KEY changed since "
            "they were saved — enter the admin key again in the connector settings"
        ) from None
