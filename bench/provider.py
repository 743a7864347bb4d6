"""A lean provider stand-in for benchmarks: Twilio and Bandwidth message creation with a set latency.

The sandbox carrier (``sandbox/``) copies each provider closely but spends milliseconds of CPU
per message on its state and callback threads, which would make it the bottleneck of a
throughput run on a 2-core machine. This server only handles the two create calls the official
SDKs make, after ``--latency-ms``, and records when each call arrived. It posts no callbacks:
the benchmarks post those themselves.

Run it as ``python -m bench.provider --port 5071 --latency-ms 150``. Besides the provider paths
it serves:

- ``GET /_bench/calls?since=N``: the calls recorded from index N on, as
  ``[arrival (Unix seconds), provider, sender, ref, is_pointer]``, and the next index;
- ``POST /_bench/latency?ms=N``: change the latency of later calls;
- ``POST /_bench/reset``: forget the recorded calls.
"""

import argparse
import asyncio
import json
import logging
import time
import uuid
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("bench.provider")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
# A pointer text carries a Pet Portal link, whose path starts with /p/.
POINTER_MARK = "/p/"
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 404: "Not Found"}


class ProviderStandIn:
    """The recorded calls and the current latency, shared by every connection."""

    def __init__(self, latency_seconds):
        self.latency_seconds = latency_seconds
        self.calls = []

    async def handle(self, method, target, headers, body):
        """Return ``(status, payload)`` for one request."""
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if method == "POST" and path.startswith("/2010-04-01/Accounts/") and path.endswith("/Messages.json"):
            return await self._twilio_create(path, body)
        if method == "POST" and path.startswith("/api/v2/users/") and path.endswith("/messages"):
            return await self._bandwidth_create(body)
        if method == "GET" and path == "/_bench/calls":
            since = int(query.get("since", ["0"])[0])
            return 200, {"calls": self.calls[since:], "next": len(self.calls)}
        if method == "POST" and path == "/_bench/latency":
            self.latency_seconds = int(query.get("ms", ["0"])[0]) / 1000
            return 200, {"latency_ms": round(self.latency_seconds * 1000)}
        if method == "POST" and path == "/_bench/reset":
            self.calls = []
            return 200, {"calls": 0}
        return 404, {"message": f"{method} {path} is not served by the benchmark provider."}

    async def _twilio_create(self, path, body):
        form = {name: values[0] for name, values in parse_qs(body.decode()).items()}
        callback = form.get("StatusCallback") or ""
        ref = parse_qs(urlsplit(callback).query).get("ref", [""])[0]
        self._record("twilio", form.get("From", ""), ref, form.get("Body", ""))
        await self._wait()
        account_sid = path.split("/")[3]
        sid = "SM" + uuid.uuid4().hex
        return 201, {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "direction": "outbound-api",
            "from": form.get("From"),
            "num_media": "0",
            "num_segments": "1",
            "sid": sid,
            "status": "queued",
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }

    async def _bandwidth_create(self, body):
        request = json.loads(body or b"{}")
        self._record("bandwidth", request.get("from", ""), request.get("tag") or "", request.get("text") or "")
        await self._wait()
        to = request.get("to")
        return 202, {
            "id": uuid.uuid4().hex,
            "owner": request.get("from"),
            "applicationId": request.get("applicationId"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "segmentCount": 1,
            "direction": "out",
            "to": to if isinstance(to, list) else [to],
            "from": request.get("from"),
            "text": request.get("text") or "",
            "tag": request.get("tag"),
            "priority": "default",
        }

    def _record(self, provider, sender, ref, text):
        self.calls.append([time.time(), provider, sender, ref, POINTER_MARK in text])

    async def _wait(self):
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)


async def serve_connection(stand_in, reader, writer):
    """Serve HTTP/1.1 requests on one keep-alive connection until the client closes it."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if len(head) > MAX_HEADER_BYTES:
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                return
            body = await reader.readexactly(length) if length else b""
            status, payload = await stand_in.handle(method, target, headers, body)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    finally:
        writer.close()


async def main(host, port, latency_ms):
    stand_in = ProviderStandIn(latency_ms / 1000)
    server = await asyncio.start_server(
        lambda reader, writer: serve_connection(stand_in, reader, writer), host, port, backlog=1024
    )
    log.info("Benchmark provider listening on %s:%s with %s ms latency.", host, port, latency_ms)
    async with server:
        await server.serve_forever()


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.provider", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK_HOSTS, help="loopback address to listen on")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before each create response, in ms")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments()
    asyncio.run(main(arguments.host, arguments.port, arguments.latency_ms))
