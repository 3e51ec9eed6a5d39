"""EST client library (also used by the tests and the ``est`` command)."""
from .est import BasicAuth, EstClient, EstClientError, make_csr, new_key
from .http import HttpsConnection, TLSError

__all__ = ["BasicAuth", "EstClient", "EstClientError", "HttpsConnection", "TLSError", "make_csr", "new_key"]
