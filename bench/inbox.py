"""Pet Portal pages for a signed-in pet parent, with the seeded millions of messages in the database.

The pet parent has a client record at 20 clinics, so ``/inbox`` shows 20 threads, each with its
newest message, and the first thread contains 20 messages. The baseline is Pawpost's own home page
for a signed-out visitor: a template rendered by the same app and server without database work.
The same figures are then taken of the fixed stack alone (bench/stack_floor_apps.py): a signed-in
page of 20 messages against its own signed-out page.
"""

import re

import requests
from flask_login import login_user

from bench import environment, load, seed, stack_floor_apps
from bench.results import Figure
from portal.extensions import db
from portal.models import Client

CONNECTIONS = 32
USER_AGENT = "pawpost-bench/1.0"


def session_cookie(app, client_id):
    """Return the session cookie value of ``client_id`` signed in, as the app would set it.

    Flask-Login's strong session protection ties a session to the address and User-Agent it
    was made for, so it is made here for 127.0.0.1 and the User-Agent wrk sends.
    """
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers={"User-Agent": USER_AGENT}):
        from flask import session

        login_user(db.session.get(Client, client_id))
        serializer = app.session_interface.get_signing_serializer(app)
        return serializer.dumps(dict(session))


def check_page(url, cookie, expected_pattern, expected_count):
    """Fetch one page as wrk will and raise RuntimeError unless it shows ``expected_count`` matches.

    Return the page's size and the session cookie a browser would send next.
    """
    response = requests.get(url, headers={"Cookie": f"session={cookie}", "User-Agent": USER_AGENT}, timeout=30, allow_redirects=False)
    found = len(re.findall(expected_pattern, response.text))
    if response.status_code != 200 or found != expected_count:
        raise RuntimeError(f"{url} returned {response.status_code} with {found} of {expected_count} expected items.")
    return len(response.content), response.cookies.get("session", cookie)


def run_benchmark(run, web):
    settings = run.settings
    with run.app.app_context():
        cookie = session_cookie(run.app, run.fixtures.inbox_client_id)
    inbox_url = f"{settings.web_url}/inbox"
    thread_url = f"{settings.web_url}/inbox/threads/{run.fixtures.thread_client_id}"
    # The first page adds the forms' CSRF secret to the session. A browser sends that cookie
    # from then on, so the load does too, instead of making every request add a new secret.
    inbox_bytes, cookie = check_page(inbox_url, cookie, r'class="thread-name"', seed.INBOX_THREADS)
    _thread_bytes, cookie = check_page(thread_url, cookie, r'id="message-\d+"', seed.THREAD_MESSAGES)
    headers = (f"Cookie: session={cookie}", f"User-Agent: {USER_AGENT}")

    baseline = load.run_wrk(f"{settings.web_url}/", run.http_seconds, CONNECTIONS, script_args=(f"User-Agent: {USER_AGENT}",))
    inbox = load.run_wrk(inbox_url, run.http_seconds, CONNECTIONS, script_args=headers)
    thread = load.run_wrk(thread_url, run.http_seconds, CONNECTIONS, script_args=headers)

    figures = []
    figures += page_figures(
        f"portal inbox, {seed.INBOX_THREADS} threads", inbox, baseline, "req/s of the signed-out home page",
        f"{inbox.errors} errors, page {inbox_bytes} bytes",
    )
    figures += page_figures(
        f"portal thread, {seed.THREAD_MESSAGES} messages", thread, baseline, "req/s of the signed-out home page",
        f"{thread.errors} errors",
    )
    figures += _floor_figures(run)
    return figures


def page_figures(name, result, baseline, baseline_name, detail):
    """Return the rate Figure of a page's LoadResult against ``baseline``'s, and its p95 Figure."""
    return [
        Figure(
            name=f"{name}, {CONNECTIONS} connections",
            value=result.rate,
            unit="req/s",
            goal=(">=", 1000),
            baseline=baseline.rate,
            baseline_name=baseline_name,
            ratio_goal=0.4,
            detail=detail,
            extra={"result": result.__dict__, "baseline": baseline.__dict__},
        ),
        Figure(
            name=f"{name} p95",
            value=result.p95_ms,
            unit="ms",
            goal=("<=", 20),
            detail=f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms; baseline p95 {baseline.p95_ms:.1f} ms",
        ),
    ]


def _floor_figures(run):
    """Return the same figures for the fixed stack alone (bench/stack_floor_apps.py), under the same server."""
    settings = run.settings
    floor = stack_floor_apps.build_portal_app(settings.database_url)
    cookie = stack_floor_apps.portal_cookie(floor, run.fixtures.thread_client_id, USER_AGENT)
    server = environment.start_web(
        run.processes, settings, app_path="bench.stack_floor_apps:portal_app", name="floor-web", port=settings.baseline_port
    )
    try:
        page_url = f"{settings.baseline_url}/messages"
        check_page(page_url, cookie, r'id="message-\d+"', seed.THREAD_MESSAGES)
        signed_out = load.run_wrk(f"{settings.baseline_url}/", run.http_seconds, CONNECTIONS, script_args=(f"User-Agent: {USER_AGENT}",))
        page = load.run_wrk(
            page_url, run.http_seconds, CONNECTIONS, script_args=(f"Cookie: session={cookie}", f"User-Agent: {USER_AGENT}")
        )
    finally:
        run.processes.stop(server)
    return page_figures(
        f"fixed stack alone: signed-in page, {seed.THREAD_MESSAGES} messages", page, signed_out,
        "req/s of its signed-out page", f"{page.errors} errors; no Pawpost code: a user loaded, one statement, one template",
    )

