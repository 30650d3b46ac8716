"""Who may see the dashboard and the admin endpoints, and what every answer tells the browser.

Without DESKMARK_ADMIN_TOKEN the dashboard is for the machine it runs on only: the peer must be a
loopback address, the Host a loopback name (so a DNS-rebinding page, whose requests carry the
attacker's host name, is refused), and the request must not have come through a proxy (which
makes every visitor look like loopback). With a token, the token is required everywhere, from
loopback too, and /metrics needs it as well.

Every request that changes something must carry an `Origin` (or `Referer`) of this very host:
the browser sends Basic credentials and loopback cookies-less requests on its own, so a
cross-site form post, or one with neither header, is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import Response, abort, request

from integrations.config import Settings

__all__ = ["require_admin", "is_admin", "require_same_origin", "secure_headers", "LOOPBACK_NAMES"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP", "Forwarded")
CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def host_name(host: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _local_request() -> str | None:
    """None when the request is the machine's own; else why it is not."""
    try:
        peer = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return "the peer address is unknown"
    if not peer.is_loopback:
        return f"the request comes from {peer}, not from this machine"
    if host_name(request.host) not in LOOPBACK_NAMES:
        return f"the Host is {request.host!r}, not a loopback name (localhost, 127.0.0.1, [::1])"
    if any(name in request.headers for name in PROXY_HEADERS):
        return "the request came through a proxy"
    return None


def _token_given() -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    if request.authorization is not None:
        return request.authorization.password or ""
    return ""


def is_admin(settings: Settings) -> bool:
    token = settings.admin_token
    if token is None:
        return _local_request() is None
    return hmac.compare_digest(_token_given().encode(), token.encode())


def require_admin(settings: Settings, local_without_token: bool = True) -> None:
    """Abort unless the request may see admin pages. Without a token: local requests only
    (or, with `local_without_token=False`, anyone: /metrics without a token stays public)."""
    token = settings.admin_token
    if token is None:
        if not local_without_token:
            return
        why = _local_request()
        if why is not None:
            abort(Response(f"the dashboard answers only on this machine until DESKMARK_ADMIN_TOKEN "
                           f"is set: {why}\n", 403, mimetype="text/plain"))
        return
    if not hmac.compare_digest(_token_given().encode(), token.encode()):
        abort(Response("DESKMARK_ADMIN_TOKEN required\n", 401, mimetype="text/plain",
                       headers={"WWW-Authenticate": 'Basic realm="deskmark"'}))


def require_same_origin() -> None:
    """Abort unless the request says it comes from a page of this very host."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        abort(Response("refused: a request that changes something needs an Origin header of "
                       "this host\n", 403, mimetype="text/plain"))
    if urlsplit(origin).netloc.lower() != request.host.lower():
        abort(Response("cross-site request refused\n", 403, mimetype="text/plain"))


SECURE_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
                  ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
_SECURE_NAMES = frozenset(name.lower() for name, _ in SECURE_HEADERS)


def secure_headers(response: Response) -> Response:
    """No framing, no sniffing, no third-party anything: the dashboard needs none of it. (One
    pass over the answer's headers: this runs on every webhook.)"""
    headers = response.headers
    present = {name.lower() for name, _ in headers} & _SECURE_NAMES
    for name, value in SECURE_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    return response
