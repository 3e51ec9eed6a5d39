"""Interop with outside EST and HTTP clients (Bouncy Castle's EST API, curl,
Python requests) against a real ``twistd -n est`` serving the sample
configuration etc/estappliance.toml, as ``make run`` uses it."""
