"""estappliance: an HSM-backed EST (RFC 7030, RFC 8951, RFC 8295) CA/RA appliance."""
