"""The hardware boundary: the only package that imports ``pkcs11``."""
from .keys import signature_hash, token_private_key
from .key_specs import KEY_SPECS, KeySpec
from .session import Token, TokenRefused
from .call_thread import on_token_thread

__all__ = ["KEY_SPECS", "KeySpec", "Token", "TokenRefused", "on_token_thread", "signature_hash", "token_private_key"]
