"""Sans-IO protocol engines: bytes in, bytes out, no sockets, no clock. One engine (pair) per module."""
