"""Response headers that harden every page, and forwarded headers trusted only from our proxy."""

import ipaddress
import logging

from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)

# Pages load only their own scripts, styles and images; nothing may frame them.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def init_app(app):
    """Add the security headers to every response and trust X-Forwarded-* only from configured proxies."""
    https = app.config["PAWPOST_BASE_URL"].startswith("https://")

    @app.after_request
    def add_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

    proxies = app.config["PAWPOST_TRUSTED_PROXIES"]
    if proxies:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, proxies)


class TrustedProxyFix:
    """Apply ProxyFix only to requests whose peer address is one of the trusted proxies.

    A request that reaches the app directly keeps its own address and scheme, whatever
    X-Forwarded-* headers it carries.
    """

    def __init__(self, wsgi_app, proxies):
        self.direct = wsgi_app
        self.proxied = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.networks = [ipaddress.ip_network(p.strip(), strict=False) for p in proxies.split(",") if p.strip()]

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR", "")):
            return self.proxied(environ, start_response)
        for key in [k for k in environ if k.startswith("HTTP_X_FORWARDED_")]:
            del environ[key]
        return self.direct(environ, start_response)

    def _trusted(self, address):
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self.networks)
