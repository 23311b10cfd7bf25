"""What every HTTP service of asyncrl decides the same way: whether an address is reachable from other
machines, which bearer token applies, and whether a request carries it."""

from __future__ import annotations

import hmac
import ipaddress
import os


def is_loopback(host: str) -> bool:
    """Whether `host` (an address to bind) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header value is `Bearer <token>` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def secret(configured: str | None, env: str) -> str | None:
    """The configured token, else the one in environment variable `env`, else none (an empty value is
    none: an unset key never matches a request that sends an empty one)."""
    return configured or os.environ.get(env) or None
