"""Configuration read from the environment.

Pawpost's own variables start with ``PAWPOST_``; ``DATABASE_URL`` and ``REDIS_URL`` keep the
names every hosting platform uses. Outside development, secrets have no default, so a missing
one stops the process at start with a message naming the variable.
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = "PAWPOST_"
# Whole-number settings with their lowest and highest allowed values (None: no highest).
# The highest values sit far above the defaults, so a mistyped one stops the process at
# start instead of failing the first send or link that uses it.
BOUNDED_SETTINGS = {
    "SEND_CONCURRENCY": (1, 64),
    "IDEMPOTENCY_KEY_HOURS": (1, None),
    "CALLBACK_CREDENTIALS_SECONDS": (0, None),
    "PORTAL_TOKEN_DAYS": (1, 365),
    "REMEMBER_DAYS": (1, 365),
    "SEND_TIMEOUT_SECONDS": (1, 300),
    "SMS_MAX_ATTEMPTS": (1, 20),
    "EMAIL_MAX_ATTEMPTS": (1, 20),
    "PUSH_MAX_ATTEMPTS": (1, 20),
    # 0 retries at once.
    "RETRY_BASE_SECONDS": (0, 86_400),
    "RETRY_MAX_SECONDS": (1, 7 * 86_400),
    # Twilio accepts a validity period of 1 to 36,000 seconds.
    "SMS_VALIDITY_SECONDS": (1, 36_000),
    "STUCK_SENDING_SECONDS": (1, 86_400),
    "RECEIPT_TIMEOUT_SECONDS": (1, 7 * 86_400),
    "MEDIA_URL_HOURS": (1, 30 * 24),
    "SENDER_RATE": (0, 1_000),
    "PACING_MARGIN_MS": (0, 1_000),
}
# The highest per-number rate in PAWPOST_SENDER_RATES, texts per second.
MAX_SENDER_RATE = 1_000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("development", "test", "production")
# The smallest request limit that lets a pet parent reply with a full-size photo (5 MB) and its
# text, CSRF token and multipart headers.
MIN_UPLOAD_BYTES = 5 * 1024 * 1024 + 64 * 1024
# The largest request limit accepted: many times the largest photo or video a text can carry,
# so a mistyped value cannot let one request spool gigabytes to disk.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024


class ConfigError(RuntimeError):
    """A configuration value is missing or invalid."""


def _env(name, default=None):
    return os.environ.get(PREFIX + name, default)


def _int(name, default):
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{PREFIX}{name}={raw!r} is invalid: it must be a whole number such as {default}. Set it to one or unset it."
        ) from None


def _bool(name, default):
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{PREFIX}{name}={raw!r} is not a boolean. Use true or false.")


# Settings every environment but development must set; development falls back to these values.
REQUIRED = {
    "SECRET_KEY": (PREFIX + "SECRET_KEY", "development-only-secret-key"),
    "SQLALCHEMY_DATABASE_URI": ("DATABASE_URL", "sqlite:///" + os.path.abspath(os.path.join("instance", "pawpost.db"))),
    "REDIS_URL": ("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "PAWPOST_BASE_URL": (PREFIX + "BASE_URL", "http://127.0.0.1:5000"),
}


def load(overrides=None):
    """Build the Flask configuration mapping from the environment plus optional overrides."""
    overrides = overrides or {}
    environment = overrides.get("PAWPOST_ENV") or _env("ENV", "development")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"{PREFIX}ENV={environment!r} is invalid. Use one of {', '.join(ENVIRONMENTS)}.")

    settings = {
        "PAWPOST_ENV": environment,
        "SECRET_KEY": _env("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL"),
        "REDIS_URL": os.environ.get("REDIS_URL"),
        "PAWPOST_BASE_URL": _env("BASE_URL"),
        # When set, both provider SDKs send to this local stand-in instead of the real APIs.
        "PAWPOST_SANDBOX_URL": _env("SANDBOX_URL"),
        "PAWPOST_PORTAL_TOKEN_DAYS": _int("PORTAL_TOKEN_DAYS", 7),
        "PAWPOST_SEND_TIMEOUT_SECONDS": _int("SEND_TIMEOUT_SECONDS", 15),
        # API responses kept for replay to retries with the same Idempotency-Key.
        "PAWPOST_IDEMPOTENCY_KEY_HOURS": _int("IDEMPOTENCY_KEY_HOURS", 48),
        # Provider calls in flight at once in one worker process, and texts per batch send job.
        "PAWPOST_SEND_CONCURRENCY": _int("SEND_CONCURRENCY", 64),
        # On, a status callback returns 200 once its event is queued in Redis, and the workers apply
        # the events in batches. Off, each callback is applied before it returns.
        "PAWPOST_QUEUE_STATUS_EVENTS": _bool("QUEUE_STATUS_EVENTS", True),
        "PAWPOST_SMS_MAX_ATTEMPTS": _int("SMS_MAX_ATTEMPTS", 4),
        "PAWPOST_RETRY_BASE_SECONDS": _int("RETRY_BASE_SECONDS", 30),
        "PAWPOST_RETRY_MAX_SECONDS": _int("RETRY_MAX_SECONDS", 900),
        # Neither a retry nor the provider's own queue may deliver a text later than this.
        "PAWPOST_SMS_VALIDITY_SECONDS": _int("SMS_VALIDITY_SECONDS", 4 * 3600),
        # A send still unconfirmed this long after its claim is checked at the provider.
        "PAWPOST_STUCK_SENDING_SECONDS": _int("STUCK_SENDING_SECONDS", 120),
        # A text with no delivery receipt this long after the provider took it is looked up.
        "PAWPOST_RECEIPT_TIMEOUT_SECONDS": _int("RECEIPT_TIMEOUT_SECONDS", 3600),
        "PAWPOST_DEMO_TOKEN_BANDWIDTH": _env("DEMO_TOKEN_BANDWIDTH"),
        "PAWPOST_DEMO_TOKEN_TWILIO": _env("DEMO_TOKEN_TWILIO"),
        "PAWPOST_LOG_JSON": _bool("LOG_JSON", False),
        # Comma-separated addresses or networks of the reverse proxies whose X-Forwarded-* headers
        # are trusted; requests from anywhere else keep their own address and scheme.
        "PAWPOST_TRUSTED_PROXIES": _env("TRUSTED_PROXIES", ""),
        # Bearer token that /metrics requires. Unset, /metrics returns 404.
        "PAWPOST_METRICS_TOKEN": _env("METRICS_TOKEN"),
        # Media URLs handed to providers stop working after this many hours.
        "PAWPOST_MEDIA_URL_HOURS": _int("MEDIA_URL_HOURS", 24),
        # Seconds a web process reuses a clinic's callback credentials before reading them again.
        # A replaced credential is still accepted for up to this long.
        "PAWPOST_CALLBACK_CREDENTIALS_SECONDS": _int("CALLBACK_CREDENTIALS_SECONDS", 60),
        # Requests one API token may send, in the notation of the limits library, such as "600 per minute".
        "PAWPOST_API_RATE_LIMIT": _env("API_RATE_LIMIT", "600 per minute"),
        # Uploads above this size are refused before the body is read.
        "MAX_CONTENT_LENGTH": _int("MAX_UPLOAD_BYTES", 12 * 1024 * 1024),
        # Look up the line type of each new number (Twilio Lookup v2, a paid add-on).
        "PAWPOST_LINE_TYPE_LOOKUP": _bool("LINE_TYPE_LOOKUP", False),
        # Attachments live here, outside the web root; only Pawpost's own routes serve them.
        "PAWPOST_MEDIA_DIR": _env("MEDIA_DIR", os.path.abspath(os.path.join("instance", "media"))),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # How long "Stay signed in" keeps someone signed in without a new link or code.
        "PAWPOST_REMEMBER_DAYS": _int("REMEMBER_DAYS", 30),
        "WTF_CSRF_TIME_LIMIT": None,
        # Outgoing mail server. Unset, development writes each email to PAWPOST_MAIL_DIR as a
        # .eml file and the other environments send no email.
        "PAWPOST_SMTP_URL": _env("SMTP_URL"),
        "PAWPOST_MAIL_FROM": _env("MAIL_FROM"),
        "PAWPOST_MAIL_DIR": _env("MAIL_DIR", os.path.abspath(os.path.join("instance", "outbox"))),
        "PAWPOST_EMAIL_MAX_ATTEMPTS": _int("EMAIL_MAX_ATTEMPTS", 4),
        # Web Push is off unless both VAPID keys are set. `flask push generate-vapid-keys` makes a pair.
        "PAWPOST_VAPID_PUBLIC_KEY": _env("VAPID_PUBLIC_KEY"),
        "PAWPOST_VAPID_PRIVATE_KEY": _env("VAPID_PRIVATE_KEY"),
        "PAWPOST_VAPID_SUBJECT": _env("VAPID_SUBJECT"),
        "PAWPOST_PUSH_MAX_ATTEMPTS": _int("PUSH_MAX_ATTEMPTS", 4),
        # Texts per second one sender number may send (0: unpaced), with per-number overrides
        # such as "+15550001111=10,+15550002222=3"; notifier/pacing.py applies them.
        "PAWPOST_SENDER_RATE": _int("SENDER_RATE", 0),
        "PAWPOST_SENDER_RATES": _env("SENDER_RATES", ""),
        # Milliseconds added to each second of pacing, to absorb the delay between a slot and the send.
        # With 50 send threads per worker on a busy 2-core machine, texts reached the provider up to
        # about 12 ms off their slots. A 25 ms margin let about one run in five put 21 texts into
        # one second of a 20/s sender (docs/benchmarks.md).
        "PAWPOST_PACING_MARGIN_MS": _int("PACING_MARGIN_MS", 40),
    }
    settings.update(overrides)
    for key, (variable, development_default) in REQUIRED.items():
        if settings.get(key):
            continue
        if environment != "development":
            raise ConfigError(f"{variable} is not set. Set it in the environment before starting ({environment}).")
        settings[key] = development_default

    settings["PAWPOST_BASE_URL"] = _check_base_url(settings["PAWPOST_BASE_URL"])
    _check_service_urls(settings)
    _check_mail(settings, environment)
    _check_vapid(settings, environment)
    _check_sender_rates(settings["PAWPOST_SENDER_RATES"])
    for name, (low, high) in BOUNDED_SETTINGS.items():
        value = settings[PREFIX + name]
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise ConfigError(f"{PREFIX}{name}={value!r} is out of range. Use a number {allowed}.")
    if settings["PAWPOST_RETRY_BASE_SECONDS"] > settings["PAWPOST_RETRY_MAX_SECONDS"]:
        raise ConfigError(
            f"{PREFIX}RETRY_BASE_SECONDS={settings['PAWPOST_RETRY_BASE_SECONDS']!r} is longer than "
            f"{PREFIX}RETRY_MAX_SECONDS={settings['PAWPOST_RETRY_MAX_SECONDS']!r}. Make the base at most the maximum."
        )
    settings.setdefault("REMEMBER_COOKIE_DURATION", timedelta(days=settings["PAWPOST_REMEMBER_DAYS"]))
    _check_api_rate_limit(settings["PAWPOST_API_RATE_LIMIT"])
    _check_trusted_proxies(settings["PAWPOST_TRUSTED_PROXIES"])
    upload_limit = settings["MAX_CONTENT_LENGTH"]
    if upload_limit is not None and upload_limit < MIN_UPLOAD_BYTES:
        raise ConfigError(
            f"{PREFIX}MAX_UPLOAD_BYTES={upload_limit!r} is too small for a reply with a 5 MB photo. "
            f"Use a number from {MIN_UPLOAD_BYTES} to {MAX_UPLOAD_BYTES}."
        )
    if upload_limit is not None and upload_limit > MAX_UPLOAD_BYTES:
        raise ConfigError(
            f"{PREFIX}MAX_UPLOAD_BYTES={upload_limit!r} is too large. "
            f"Use a number from {MIN_UPLOAD_BYTES} to {MAX_UPLOAD_BYTES}."
        )
    settings["SQLALCHEMY_DATABASE_URI"] = _with_driver(settings["SQLALCHEMY_DATABASE_URI"])
    settings.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(settings["SQLALCHEMY_DATABASE_URI"]))
    # Rate-limit counters live in the same Redis as the queues, so every web process shares them.
    settings.setdefault("RATELIMIT_STORAGE_URI", settings["REDIS_URL"])
    secure = settings["PAWPOST_BASE_URL"].startswith("https://")
    settings.setdefault("SESSION_COOKIE_SECURE", secure)
    settings.setdefault("REMEMBER_COOKIE_SECURE", secure)
    return settings


def _check_base_url(url):
    url = url.rstrip("/")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or re.search(r"\s", url):
        raise ConfigError(
            f"{PREFIX}BASE_URL={url!r} is not an absolute http(s) URL with a host, a valid port and no spaces. "
            "Set it to the public address of Pawpost, for example https://pawpost.example.com."
        )
    # The pointer SMS carries a link on this URL and must stay one 160-character segment.
    if len(url) > 60:
        raise ConfigError(
            f"{PREFIX}BASE_URL={url!r} is {len(url)} characters long. "
            "Use a base URL of at most 60 characters so pointer texts fit one SMS segment."
        )
    return url


DEVELOPMENT_MAIL_FROM = "notifications@pawpost.example"
# Deliberately loose: one @ with text on both sides and no spaces or angle brackets.
ADDRESS_PATTERN = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")
BASE64URL_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
SMTP_URL_EXAMPLE = "smtp://user:password@mail.example.com:587?starttls=true"


@dataclass(frozen=True)
class SmtpSettings:
    """The parts of PAWPOST_SMTP_URL."""

    host: str
    port: int
    username: str | None
    password: str | None
    # smtps:// speaks TLS from the first byte, while starttls upgrades a plain smtp:// connection.
    implicit_tls: bool
    starttls: bool


def parse_smtp_url(url):
    """Parse ``smtp://user:password@host:port`` or ``smtps://…``, with ``?starttls=true`` for smtp://.

    Error messages never repeat the URL, since it can contain the password.
    """
    name = PREFIX + "SMTP_URL"
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(f"{name} must start with smtp:// or smtps://, for example {SMTP_URL_EXAMPLE}.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"{name} has an invalid port. Use a number from 1 to 65535.")
    if not parts.hostname:
        raise ConfigError(f"{name} has no host name, for example {SMTP_URL_EXAMPLE}.")
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"starttls"})
    if unknown:
        raise ConfigError(f"{name} has unknown options {', '.join(unknown)}. The only option is starttls=true.")
    starttls_value = options.get("starttls", ["false"])[-1].lower()
    if starttls_value not in ("true", "false"):
        raise ConfigError(f"{name} has starttls={starttls_value!r}. Use starttls=true or starttls=false.")
    starttls = starttls_value == "true"
    implicit_tls = parts.scheme == "smtps"
    if implicit_tls and starttls:
        raise ConfigError(f"{name} asks for smtps:// and starttls=true. Use one: smtps:// (port 465) or starttls (port 587).")

    if port is None and implicit_tls:
        port = 465
    elif port is None and starttls:
        port = 587
    elif port is None:
        port = 25
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit_tls,
        starttls=starttls,
    )


def _check_mail(settings, environment):
    if settings["PAWPOST_SMTP_URL"]:
        # Checked in every environment: a mistyped URL has no sensible fallback.
        parse_smtp_url(settings["PAWPOST_SMTP_URL"])
        if not settings["PAWPOST_MAIL_FROM"] and environment != "development":
            raise ConfigError(
                f"{PREFIX}MAIL_FROM is not set. Set it to the address emails are sent from, "
                "for example notifications@pawpost.example.com."
            )
    settings["PAWPOST_MAIL_FROM"] = settings["PAWPOST_MAIL_FROM"] or DEVELOPMENT_MAIL_FROM
    if not ADDRESS_PATTERN.fullmatch(settings["PAWPOST_MAIL_FROM"]):
        raise ConfigError(
            f"{PREFIX}MAIL_FROM={settings['PAWPOST_MAIL_FROM']!r} is not an email address. "
            "Set a bare address such as notifications@pawpost.example.com; the clinic's name is added as the sender name."
        )


def base64url_bytes(value):
    """Decode unpadded base64url text, as Web Push keys are written, or return None when it is not base64url."""
    if not isinstance(value, str) or not BASE64URL_PATTERN.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


SENDER_RATE_PATTERN = re.compile(r"\s*\+[1-9]\d{1,14}\s*=\s*\d+\s*")


def _check_sender_rates(text):
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if not SENDER_RATE_PATTERN.fullmatch(item):
            raise ConfigError(
                f"{PREFIX}SENDER_RATES has {item.strip()!r}, which is not an E.164 number and a whole rate. "
                "Write each as +15550001111=10 (texts per second), separated by commas."
            )
        if int(item.split("=")[1]) > MAX_SENDER_RATE:
            raise ConfigError(
                f"{PREFIX}SENDER_RATES has {item.strip()!r}, whose rate is out of range. "
                f"Use a whole number of texts per second from 0 to {MAX_SENDER_RATE}."
            )


def _check_api_rate_limit(text):
    from limits import parse

    try:
        parse(text)
    except ValueError:
        raise ConfigError(
            f"{PREFIX}API_RATE_LIMIT={text!r} is not a rate limit. Write it as a count per period, such as 600 per minute."
        ) from None


def _check_trusted_proxies(text):
    import ipaddress

    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{PREFIX}TRUSTED_PROXIES has {item!r}, which is not an IP address or network. "
                "List the proxies' addresses or networks, such as 10.0.0.5,10.1.0.0/16, not host names."
            ) from None


def check_log_level(text):
    """Return the logging level named by PAWPOST_LOG_LEVEL's ``text``, in capitals; raise ConfigError if unknown."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{PREFIX}LOG_LEVEL={text!r} is not a log level. Use one of {', '.join(LOG_LEVELS)}.")
    return level


def _check_vapid(settings, environment):
    public, private = settings["PAWPOST_VAPID_PUBLIC_KEY"], settings["PAWPOST_VAPID_PRIVATE_KEY"]
    if not settings["PAWPOST_VAPID_SUBJECT"]:
        # Push services contact this address about problems, so production needs a real one.
        if public and environment != "development" and settings["PAWPOST_MAIL_FROM"] == DEVELOPMENT_MAIL_FROM:
            raise ConfigError(
                f"{PREFIX}VAPID_SUBJECT is not set. Set it to a contact for push services, "
                "for example mailto:ops@pawpost.example.com."
            )
        settings["PAWPOST_VAPID_SUBJECT"] = "mailto:" + settings["PAWPOST_MAIL_FROM"]
    if not settings["PAWPOST_VAPID_SUBJECT"].startswith(("mailto:", "https://")):
        raise ConfigError(
            f"{PREFIX}VAPID_SUBJECT must be a mailto: or https:// contact for push services, "
            "for example mailto:ops@pawpost.example.com."
        )
    if not public and not private:
        return
    if not (public and private):
        missing = "VAPID_PRIVATE_KEY" if public else "VAPID_PUBLIC_KEY"
        raise ConfigError(f"{PREFIX}{missing} is not set. Set both VAPID keys, or neither to turn Web Push off.")
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private_bytes = base64url_bytes(private)
    if private_bytes is None or len(private_bytes) != 32:
        raise ConfigError(
            f"{PREFIX}VAPID_PRIVATE_KEY is not a base64url P-256 private key (32 bytes). "
            "Run `flask push generate-vapid-keys` for a new pair."
        )
    derived = ec.derive_private_key(int.from_bytes(private_bytes, "big"), ec.SECP256R1()).public_key()
    if derived.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) != base64url_bytes(public):
        raise ConfigError(
            f"{PREFIX}VAPID_PUBLIC_KEY does not belong to {PREFIX}VAPID_PRIVATE_KEY. "
            "Set the two keys printed together by `flask push generate-vapid-keys`."
        )


DATABASE_SCHEMES = ("postgres://", "postgresql://", "postgresql+psycopg://", "sqlite://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_service_urls(settings):
    """Raise ConfigError unless DATABASE_URL names PostgreSQL or SQLite and REDIS_URL names Redis.

    The error shows only the URL's scheme, since the rest can contain a password.
    """
    database_url, redis_url = settings["SQLALCHEMY_DATABASE_URI"], settings["REDIS_URL"]
    if not database_url.startswith(DATABASE_SCHEMES):
        raise ConfigError(
            f"DATABASE_URL starts with {database_url.partition(':')[0]!r}, which is not PostgreSQL or SQLite. "
            "Use postgresql://user:password@host:5432/pawpost, or unset it for the SQLite file in instance/."
        )
    if not redis_url.startswith(REDIS_SCHEMES):
        raise ConfigError(
            f"REDIS_URL starts with {redis_url.partition(':')[0]!r}, which is not a Redis URL. "
            "Use redis://host:6379/0 (or rediss:// for TLS, unix:// for a socket)."
        )


def _with_driver(url):
    # Hosting platforms hand out postgres:// URLs; SQLAlchemy needs the driver named.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _engine_options(url):
    if url.startswith("sqlite"):
        # The web server and the worker write to one SQLite file; wait for the lock, don't fail.
        return {"connect_args": {"timeout": 30}}
    # portal.pool checks idle connections before use, instead of SQLAlchemy's pool_pre_ping,
    # which costs a round trip on every checkout.
    return {}
