"""ASN.1 definitions per RFC, in asn1crypto's style: one class per type,
the RFC's names kept, OIDs in one map per module."""
