"""Issuing: certificates (and, later, CRLs) signed with keys in the token."""
from .authority import CertificateAuthority, IssueRequest, load_pem_certs
from .signer import TokenSigner
from .content import ContentSigner

__all__ = ["CertificateAuthority", "ContentSigner", "IssueRequest", "TokenSigner", "load_pem_certs"]
