"""Download media that an API caller gives by URL, without letting the URL reach our own network.

Each host name is resolved once, every address is checked, and the connection goes to the
checked address, so a DNS answer that changes between the check and the request (DNS
rebinding) cannot lead elsewhere. Redirects are followed by hand and checked the same way.
"""

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
CONNECT_TIMEOUT_SECONDS = 5
# The whole download, all redirects included, must finish within this time.
TOTAL_TIMEOUT_SECONDS = 15
CHUNK_BYTES = 64 * 1024


class MediaFetchFailed(ValueError):
    """A media URL is not allowed or could not be downloaded; the text names the URL and the fix."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one download: the maximum size and whether loopback addresses are allowed."""

    max_bytes: int
    # Development and tests serve files from 127.0.0.1; production never fetches from itself.
    allow_loopback: bool = False


def fetch(url, policy, deadline=None):
    """Return the bytes at ``url`` (http or https), following at most MAX_REDIRECTS redirects.

    Raises MediaFetchFailed when the URL is not http(s), resolves to a private, loopback,
    link-local or otherwise non-public address (loopback is allowed by ``policy``), returns an
    HTTP error, is larger than ``policy.max_bytes`` or does not finish before the deadline.
    """
    deadline = deadline or time.monotonic() + TOTAL_TIMEOUT_SECONDS
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        pool, response = _request(current, policy, deadline)
        try:
            if response.status not in (301, 302, 303, 307, 308):
                return _read_body(url, response, policy, deadline)
            location = response.headers.get("Location")
        finally:
            response.release_conn()
            pool.close()
        if not location:
            raise MediaFetchFailed(f"{url} responded with a redirect that has no Location header. Give the file's final URL.")
        try:
            current = urljoin(current, location)
        except ValueError:
            raise MediaFetchFailed(f"{url} redirected to an invalid URL. Give the file's final URL.") from None
    raise MediaFetchFailed(f"{url} redirected more than {MAX_REDIRECTS} times. Give the file's final URL.")


def _request(url, policy, deadline):
    parts, port = _parse(url)
    address = _checked_address(url, parts.hostname, port, policy)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise MediaFetchFailed(f"Downloading {url} timed out after {TOTAL_TIMEOUT_SECONDS} s. Give a faster URL.")

    pool = _pool(parts, address, port, remaining)
    try:
        response = pool.urlopen(
            "GET", _target(parts), headers=_headers(parts), redirect=False, preload_content=False, assert_same_host=False
        )
    except urllib3.exceptions.NewConnectionError:
        # Checked first: urllib3 2 derives NewConnectionError from ConnectTimeoutError.
        pool.close()
        raise MediaFetchFailed(f"Could not download {url}: the server could not be reached. Check the URL.") from None
    except urllib3.exceptions.TimeoutError:
        pool.close()
        raise MediaFetchFailed(f"Downloading {url} timed out. Give a URL that responds within {TOTAL_TIMEOUT_SECONDS} s.") from None
    except urllib3.exceptions.HTTPError as exc:
        pool.close()
        log.info("Media download failed: %s.", type(exc).__name__)
        raise MediaFetchFailed(f"Could not download {url}: the connection failed. Check the URL.") from None
    return pool, response


def _parse(url):
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit rejects an unclosed IPv6 address such as http://[::1.
        raise MediaFetchFailed(f"{url} is not a valid URL. Check its host and brackets.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MediaFetchFailed(f"{url} is not an http or https URL. Give a URL that starts with https://.")
    try:
        return parts, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise MediaFetchFailed(f"{url} has an invalid port.") from None


def _pool(parts, address, port, remaining):
    timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT_SECONDS, remaining), read=remaining)
    options = {"port": port, "timeout": timeout, "retries": False, "maxsize": 1}
    if parts.scheme == "https":
        # Connect to the checked address but verify the certificate for the host name.
        return urllib3.HTTPSConnectionPool(
            address, server_hostname=parts.hostname, assert_hostname=parts.hostname, cert_reqs="CERT_REQUIRED", **options
        )
    return urllib3.HTTPConnectionPool(address, **options)


def _target(parts):
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _headers(parts):
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {
        "Host": host if parts.port is None else f"{host}:{parts.port}",
        "User-Agent": "Pawpost media fetcher",
        "Accept": "image/*, video/*",
        # Compressed bodies would be inflated past the size check, so ask for none.
        "Accept-Encoding": "identity",
    }


def _checked_address(url, hostname, port, policy):
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise MediaFetchFailed(f"The host of {url} could not be resolved. Check the URL.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not _allowed(address, policy):
            raise MediaFetchFailed(
                f"{url} points to a private or local network address. Give a public URL for the file."
            )
    if not addresses:
        raise MediaFetchFailed(f"The host of {url} could not be resolved. Check the URL.")
    return str(addresses[0])


def _allowed(address, policy):
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return policy.allow_loopback
    # is_global is False for private, link-local, shared (100.64/10), reserved and documentation ranges.
    return address.is_global and not address.is_multicast


def _read_body(url, response, policy, deadline):
    if response.status != 200:
        raise MediaFetchFailed(f"{url} responded with HTTP status {response.status}. Give a URL that returns the file.")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise MediaFetchFailed(f"{url} is {int(declared)} bytes; the limit is {policy.max_bytes} bytes. Send a smaller file.")
    chunks, size = [], 0
    try:
        for chunk in response.stream(CHUNK_BYTES, decode_content=False):
            size += len(chunk)
            if size > policy.max_bytes:
                raise MediaFetchFailed(f"{url} is larger than the limit of {policy.max_bytes} bytes. Send a smaller file.")
            if time.monotonic() > deadline:
                raise MediaFetchFailed(f"Downloading {url} took longer than {TOTAL_TIMEOUT_SECONDS} s. Give a faster URL.")
            chunks.append(chunk)
    except urllib3.exceptions.TimeoutError:
        raise MediaFetchFailed(f"Downloading {url} timed out. Give a URL that responds within {TOTAL_TIMEOUT_SECONDS} s.") from None
    except urllib3.exceptions.HTTPError:
        raise MediaFetchFailed(f"Downloading {url} failed part way. Try again or give another URL.") from None
    return b"".join(chunks)
