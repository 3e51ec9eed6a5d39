"""EST client library (also used by the tests and the ``est`` command)."""
from .est import BasicAuth, DigestAuth, EnrollmentPending, EstClient, EstClientError, make_csr, new_key
from .http import HttpsConnection, TLSError

__all__ = ["BasicAuth", "DigestAuth", "EnrollmentPending", "EstClient", "EstClientError", "HttpsConnection", "TLSError", "make_csr", "new_key"]
