"""The one base of every error the pure PKI layer raises: bytes that are not
the structure expected, or a structure that does not verify. Callers that
only need to refuse bad input catch ``PkiError``; each module's subclass says
what was being read."""
from __future__ import annotations


class PkiError(ValueError):
    """Input that is not what it should be; the message is safe to show a client."""
