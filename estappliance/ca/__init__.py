"""Issuing: certificates (and, later, CRLs) signed with keys in the token."""
from .authority import CertificateAuthority, IssueRequest, TokenSigner, load_pem_certs

__all__ = ["CertificateAuthority", "IssueRequest", "TokenSigner", "load_pem_certs"]
