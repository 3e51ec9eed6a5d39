"""The RA policy engine: authentication, authorization, CSR policy."""
from .auth import Authenticator, Credentials, Identity, TrustAnchors
from .registrar import Registrar

__all__ = ["Authenticator", "Credentials", "Identity", "Registrar", "TrustAnchors"]
