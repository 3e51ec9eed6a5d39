"""RFC 9908 (CSR Attributes clarified, January 2026): the
CertificationRequestInfoTemplate attribute of CsrAttrs and the extension
request template (module CRITemplateModule, IMPLICIT TAGS).

  CertificationRequestInfoTemplate ::= SEQUENCE {
      version       INTEGER { v1(0) } (v1, ... ),
      subject       NameTemplate OPTIONAL,
      subjectPKInfo [0] SubjectPublicKeyInfoTemplate OPTIONAL,
      attributes    [1] Attributes }
  NameTemplate ::= CHOICE { rdnSequence RDNSequenceTemplate }
  RDNSequenceTemplate ::= SEQUENCE OF RelativeDistinguishedNameTemplate
  RelativeDistinguishedNameTemplate ::= SET SIZE (1..MAX) OF SingleAttributeTemplate
  SingleAttributeTemplate ::= SEQUENCE { type OID, value ANY OPTIONAL }
  SubjectPublicKeyInfoTemplate ::= SEQUENCE {
      algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING OPTIONAL }
  ExtensionReqTemplate ::= SEQUENCE SIZE (1..MAX) OF ExtensionTemplate
  ExtensionTemplate ::= SEQUENCE {
      extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING OPTIONAL }

The OIDs are IANA's "SMI Security for S/MIME Attributes" 61 and 62.
"""
from __future__ import annotations

from asn1crypto import core, keys

from .rfc7030 import Attribute

OIDS = {
    "id-aa-certificationRequestInfoTemplate": "1.2.840.113549.1.9.16.2.61",
    "id-aa-extensionReqTemplate": "1.2.840.113549.1.9.16.2.62",
}


class SingleAttributeTemplate(core.Sequence):
    _fields = [
        ("type", core.ObjectIdentifier),
        ("value", core.Any, {"optional": True}),
    ]


class RelativeDistinguishedNameTemplate(core.SetOf):
    _child_spec = SingleAttributeTemplate


class RDNSequenceTemplate(core.SequenceOf):
    _child_spec = RelativeDistinguishedNameTemplate


class NameTemplate(core.Choice):
    _alternatives = [("rdnSequence", RDNSequenceTemplate)]


class SubjectPublicKeyInfoTemplate(core.Sequence):
    _fields = [
        ("algorithm", keys.PublicKeyAlgorithm),
        ("subject_public_key", core.OctetBitString, {"optional": True}),
    ]


class Attributes(core.SetOf):
    _child_spec = Attribute


class CertificationRequestInfoTemplate(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("subject", NameTemplate, {"optional": True}),
        ("subject_pk_info", SubjectPublicKeyInfoTemplate, {"implicit": 0, "optional": True}),
        ("attributes", Attributes, {"implicit": 1}),
    ]


class ExtensionTemplate(core.Sequence):
    _fields = [
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extn_value", core.OctetString, {"optional": True}),
    ]


class ExtensionReqTemplate(core.SequenceOf):
    _child_spec = ExtensionTemplate
