"""Pure builders and parsers: bytes in, bytes out, no token, no I/O."""
