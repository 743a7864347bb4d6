"""Serve the sandbox carrier: python -m sandbox --host 127.0.0.1 --port 5050 [--config FILE]."""

import argparse
import logging
import signal
import sys

from werkzeug.serving import make_server

from sandbox import create_app
from sandbox.config import watch_config_file
from sandbox.serving import RedactingRequestHandler

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

logger = logging.getLogger("sandbox")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse the command line, rejecting a host that is not a loopback address."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on: 127.0.0.1, localhost or ::1"
    )
    parser.add_argument("--port", type=int, default=5050, help="TCP port to listen on (default 5050)")
    parser.add_argument(
        "--config",
        metavar="FILE.json",
        help="JSON config file, reloaded whenever its mtime changes (it may be created after start)",
    )
    arguments = parser.parse_args(argv)
    if arguments.host not in LOCAL_HOSTS:
        parser.error(
            f"--host {arguments.host} is not allowed: the sandbox listens only on {', '.join(LOCAL_HOSTS)}."
        )
    return arguments


def stop_on_sigterm(signal_number: int, frame) -> None:
    """Raise KeyboardInterrupt so SIGTERM stops the server the same way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the threaded server and serve until interrupted."""
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    if arguments.config:
        watch_config_file(app, arguments.config)
    server = make_server(
        arguments.host, arguments.port, app, threaded=True, request_handler=RedactingRequestHandler
    )
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    logger.info("Sandbox carrier listening on http://%s:%d/", arguments.host, server.port)
    server.serve_forever()
    logger.info("Sandbox carrier stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
