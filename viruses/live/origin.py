"""Which pages may open a WebSocket: the Origin check against cross-site WebSocket hijacking."""

from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class SameOriginValidator(OriginValidator):
    """Channels' `OriginValidator`, with Django's own CSRF rule when no origin is listed.

    `allowed_origins` (settings.WS_ALLOWED_ORIGINS) given: the Origin must match one, by
    Channels' rules (a full origin pins scheme, host and port; a bare host name does not).
    Empty: the page must come from the very origin the handshake was sent to, as Django's
    CSRF check asks of a POST: the Host header's name and port, that name in ALLOWED_HOSTS,
    and the scheme https when the TLS proxy says so (SECURE_PROXY_SSL_HEADER), else http.
    Any port then works (`make run`, tests) without letting in a page of another port.
    """

    def __call__(self, scope, receive, send):
        # Not async: it returns the coroutine to run, so an idle socket holds no frame of it.
        if self.allowed_origins:
            return super().__call__(scope, receive, send)
        if self.same_origin(scope):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

    def same_origin(self, scope) -> bool:
        """Whether the handshake's Origin is the origin of the Host it was sent to."""
        headers = dict(scope.get("headers") or ())
        try:
            origin, host = headers[b"origin"].decode("ascii"), headers[b"host"].decode("ascii")
        except (KeyError, UnicodeDecodeError):
            return False
        domain, _ = split_domain_port(host)
        # A leading dot would be a pattern for every subdomain, not a host.
        if not domain or domain.startswith(".") or not validate_host(domain, settings.ALLOWED_HOSTS):
            return False
        scheme = "https" if _secure(headers) else "http"
        return self.match_allowed_origin(urlparse(origin), f"{scheme}://{host}")


def _secure(headers: dict) -> bool:
    """Django's `request.is_secure()` behind a TLS proxy, from the handshake's headers."""
    if settings.SECURE_PROXY_SSL_HEADER is None:
        return False
    name, value = settings.SECURE_PROXY_SSL_HEADER
    header = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
    return headers.get(header, b"").split(b",")[0].strip().decode("latin1") == value
