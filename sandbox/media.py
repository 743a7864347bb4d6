"""Media of inbound MMS: generated PNG files served at Twilio- and Bandwidth-shaped URLs."""

import uuid

import flask

from sandbox.bandwidth_api import BandwidthError, authenticate, render_bandwidth_error
from sandbox.bandwidth_payloads import error_body
from sandbox.png import solid_png
from sandbox.request_log import current_state, log_requests_of
from sandbox.state import MediaFile, SandboxState
from sandbox.twilio_api import TwilioError, render_twilio_error

PNG_CONTENT_TYPE = "image/png"

twilio_blueprint = log_requests_of(flask.Blueprint("twilio_media", __name__, url_prefix="/2010-04-01"))
twilio_blueprint.register_error_handler(TwilioError, render_twilio_error)

bandwidth_blueprint = log_requests_of(flask.Blueprint("bandwidth_media", __name__, url_prefix="/api/v2"))
bandwidth_blueprint.register_error_handler(BandwidthError, render_bandwidth_error)


def twilio_media_path(account_sid: str, message_sid: str, media_sid: str) -> str:
    """Return the path of one media file of a Twilio message."""
    return f"/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}"


def bandwidth_media_path(account_id: str, media_name: str) -> str:
    """Return the path of one media file of a Bandwidth account."""
    return f"/api/v2/users/{account_id}/media/{media_name}"


def add_twilio_media(
    state: SandboxState, base_url: str, account_sid: str, auth_token: str, message_sid: str, count: int
) -> list[str]:
    """Store `count` PNG files for a Twilio inbound message and return their absolute URLs."""
    urls = []
    for index in range(count):
        path = twilio_media_path(account_sid, message_sid, "ME" + uuid.uuid4().hex)
        state.add_media(path, MediaFile(solid_png(index), PNG_CONTENT_TYPE, account_sid, auth_token))
        urls.append(base_url + path)
    return urls


def add_bandwidth_media(
    state: SandboxState, base_url: str, account_id: str, message_id: str, count: int
) -> list[str]:
    """Store `count` PNG files for a Bandwidth inbound message and return their absolute URLs."""
    urls = []
    for index in range(count):
        # Bandwidth names inbound media {messageId}/{index}/{filename}, so a media id has slashes.
        path = bandwidth_media_path(account_id, f"{message_id}/{index}/image{index}.png")
        state.add_media(path, MediaFile(solid_png(index), PNG_CONTENT_TYPE, account_id))
        urls.append(base_url + path)
    return urls


def check_twilio_media_auth(account_sid: str, media: MediaFile) -> None:
    """Raise 20003 if the request carries basic auth other than the account's SID and auth token."""
    auth = flask.request.authorization
    # Media URLs work without auth, as on a Twilio account that has not turned on media auth.
    if auth is None:
        return
    if auth.type != "basic" or auth.username != account_sid or auth.password != media.auth_token:
        raise TwilioError(20003, "Authenticate: basic auth must be the AccountSid and its auth token.", 401)


@twilio_blueprint.get("/Accounts/<account_sid>/Messages/<message_sid>/Media/<media_sid>")
def twilio_media(account_sid: str, message_sid: str, media_sid: str) -> flask.Response:
    """Return one media file of a Twilio inbound message, or 404 with code 20404."""
    media = current_state().find_media(twilio_media_path(account_sid, message_sid, media_sid))
    if media is None:
        raise TwilioError(20404, f"The requested resource {flask.request.path} was not found", 404)
    check_twilio_media_auth(account_sid, media)
    return flask.Response(media.content, mimetype=media.content_type)


@bandwidth_blueprint.get("/users/<account_id>/media/<path:media_name>")
def bandwidth_media(account_id: str, media_name: str) -> flask.Response:
    """Return one media file of a Bandwidth account, or 404 not-found."""
    # The SDK's get_media percent-encodes the slashes of a media id, and the server decodes
    # them before routing, so the path converter matches the same name either way.
    authenticate()
    media = current_state().find_media(bandwidth_media_path(account_id, media_name))
    if media is None:
        description = f"Media {media_name!r} was not found in account {account_id}."
        raise BandwidthError(404, error_body("not-found", description))
    return flask.Response(media.content, mimetype=media.content_type)
