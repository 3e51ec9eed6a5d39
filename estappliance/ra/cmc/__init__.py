"""Full PKI Requests (RFC 7030 4.3, RFC 5272/6402): who asks, the requests
and controls of a PKIData, and the Full PKI Response. ``FullCmc`` is the
entry point; the web layer maps its ``Verdict`` to an HTTP status."""
from .common import Verdict
from .requests import CmcAnswer, FullCmc

__all__ = ["CmcAnswer", "FullCmc", "Verdict"]
