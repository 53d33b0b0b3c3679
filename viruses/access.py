"""Who may read operator-only answers: `/healthz` details and `/metrics`."""

import hmac
import ipaddress


def client_in(request, networks) -> bool:
    """Whether the request's client address (REMOTE_ADDR) is in one of `networks`."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in networks)


def bearer_token_is(request, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
