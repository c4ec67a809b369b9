"""Messaging Layer Security (RFC 9420), sans-I/O.

The public API mirrors the MLS Web API (``MLS`` / ``GroupView``); the
protocol core lives in ``mls.wire`` (wire format), ``mls.crypto`` (cipher
suites) and the key schedule, secret tree and framing modules.
"""
