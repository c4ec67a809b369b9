"""SFrame (RFC 9605), sans-I/O."""
