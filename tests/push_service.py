"""A local stand-in for a Web Push service, for tests.

It plays the browser and its push service at once. ``subscribe`` makes a subscription as a
browser would: a P-256 key pair, an auth secret and an endpoint URL on this server.

Each POST to an endpoint is checked like a push service checks it. The RFC 8292 VAPID JWT must
be ES256, signed by the application server key the subscription was made with, with ``aud`` the
endpoint's origin, ``exp`` in the future and ``sub`` set. The body is then decrypted as the
browser decrypts it (RFC 8291, aes128gcm) and recorded. The service responds 201, or 410 or 404
for an expired subscription, or a status a test set.
"""

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# RFC 8292 section 2: a JWT valid for longer than 24 hours may be rejected.
MAX_JWT_LIFETIME_SECONDS = 24 * 3600


def b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    name: str
    endpoint: str
    application_server_key: str
    private_key: object
    auth_secret: bytes
    # Status to respond with from now on (404 or 410 once the browser dropped the subscription).
    gone_status: int | None = None
    # Statuses to respond with to the next requests, before any check.
    queued_statuses: list = field(default_factory=list)

    def as_json(self):
        """Return the subscription as PushSubscription.toJSON() gives it in a browser."""
        public = self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url_encode(public), "auth": b64url_encode(self.auth_secret)},
        }


@dataclass
class Push:
    """One push message the service accepted, decrypted."""

    endpoint: str
    claims: dict
    payload: dict
    ttl: int


class PushService:
    """The stand-in server on a free 127.0.0.1 port. Start it, then make subscriptions."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.lock = threading.Lock()
        self.subscriptions = {}
        self.received = []
        # (endpoint, reason) for every request that failed a check.
        self.rejected = []
        self.count = 0

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def reset(self):
        with self.lock:
            self.subscriptions.clear()
            self.received.clear()
            self.rejected.clear()

    def subscribe(self, application_server_key):
        """Create a subscription bound to ``application_server_key`` and return its browser JSON."""
        with self.lock:
            self.count += 1
            name = f"sub-{self.count}"
            subscription = Subscription(
                name=name,
                endpoint=f"{self.url}/push/{name}",
                application_server_key=application_server_key.rstrip("="),
                private_key=ec.generate_private_key(ec.SECP256R1()),
                auth_secret=bytes(range(self.count, self.count + 16)),
            )
            self.subscriptions[name] = subscription
        return subscription.as_json()

    def expire(self, endpoint, status=410):
        """Make ``endpoint`` respond with ``status`` (404 or 410) from now on, as after the browser dropped it."""
        self._by_endpoint(endpoint).gone_status = status

    def fail_next(self, endpoint, status, times=1):
        """Make the next ``times`` requests to ``endpoint`` get ``status``."""
        self._by_endpoint(endpoint).queued_statuses.extend([status] * times)

    def received_by(self, endpoint):
        with self.lock:
            return [push for push in self.received if push.endpoint == endpoint]

    def _by_endpoint(self, endpoint):
        return self.subscriptions[endpoint.rsplit("/", 1)[1]]

    def handle(self, path, headers, body):
        """Check and record one push request, and return the HTTP status to respond with."""
        subscription = self.subscriptions.get(path.rsplit("/", 1)[-1]) if path.startswith("/push/") else None
        if subscription is None:
            return 404
        if subscription.gone_status:
            return subscription.gone_status
        if subscription.queued_statuses:
            return subscription.queued_statuses.pop(0)
        try:
            claims = self._check_vapid(subscription, headers.get("Authorization", ""))
            ttl = self._check_headers(headers)
            plaintext = http_ece.decrypt(
                body, private_key=subscription.private_key, auth_secret=subscription.auth_secret, version="aes128gcm"
            )
            payload = json.loads(plaintext)
        except Rejected as exc:
            with self.lock:
                self.rejected.append((subscription.endpoint, str(exc)))
            return exc.status
        except (http_ece.ECEException, ValueError) as exc:
            with self.lock:
                self.rejected.append((subscription.endpoint, f"payload does not decrypt: {exc}"))
            return 400
        with self.lock:
            self.received.append(Push(subscription.endpoint, claims, payload, ttl))
        return 201

    def _check_vapid(self, subscription, authorization):
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Rejected(401, f"Authorization scheme is {scheme!r}, not vapid")
        values = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        if values.get("k", "").rstrip("=") != subscription.application_server_key:
            raise Rejected(403, "k is not the key the subscription was made with")

        token = values.get("t", "")
        header_b64, payload_b64, signature_b64 = (token.split(".") + ["", "", ""])[:3]
        try:
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(values["k"]))
        except ValueError as exc:
            raise Rejected(401, f"JWT or key is malformed: {exc}") from None
        if header.get("alg") != "ES256":
            raise Rejected(401, f"JWT alg is {header.get('alg')!r}, not ES256")

        if len(signature) != 64:
            raise Rejected(401, "JWT signature is not 64 bytes (r || s)")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            public_key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Rejected(401, "JWT signature does not verify") from None

        if claims.get("aud") != self.url:
            raise Rejected(401, f"aud is {claims.get('aud')!r}, not {self.url!r}")
        now = time.time()
        if not now < claims.get("exp", 0) <= now + MAX_JWT_LIFETIME_SECONDS:
            raise Rejected(401, "exp is in the past or more than 24 hours ahead")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise Rejected(401, "sub is missing or not a mailto: or https: URL")
        return claims

    def _check_headers(self, headers):
        if headers.get("Content-Encoding") != "aes128gcm":
            raise Rejected(415, f"Content-Encoding is {headers.get('Content-Encoding')!r}, not aes128gcm")
        ttl = headers.get("TTL", "")
        if not ttl.isdigit():
            raise Rejected(400, "TTL header is missing")
        return int(ttl)


class Rejected(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


def _handler_for(service):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = service.handle(self.path, self.headers, body)
            self.send_response(status)
            if status == 201:
                self.send_header("Location", f"{service.url}/message/{len(service.received)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            # Quiet: pytest shows failures, and request lines carry endpoint ids only.
            pass

    return Handler
