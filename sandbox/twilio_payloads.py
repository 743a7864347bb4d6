"""Twilio Messages API (2010-04-01) response bodies, status callbacks and inbound webhooks."""

from datetime import datetime

from twilio.request_validator import RequestValidator

from sandbox.callbacks import Callback, Step
from sandbox.outcomes import Outcome
from sandbox.state import Delivery

API_VERSION = "2010-04-01"
FAILURE_STATUSES = ("failed", "undelivered")
# Twilio's direction values for the sandbox's Delivery.direction.
DIRECTIONS = {"outbound": "outbound-api", "inbound": "inbound", "reply": "outbound-reply"}


def rfc2822(moment: datetime | None) -> str | None:
    """Format a UTC datetime the way Twilio's date_* fields do."""
    if moment is None:
        return None
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


def error_body(code: int, message: str, status: int) -> dict:
    """Build Twilio's JSON error body, which the SDK turns into TwilioRestException."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def message_uri(delivery: Delivery, suffix: str = ".json") -> str:
    """Return the message resource path, as Twilio puts it in uri fields."""
    return f"/{API_VERSION}/Accounts/{delivery.account_id}/Messages/{delivery.id}{suffix}"


def message_resource(delivery: Delivery) -> dict:
    """Build the Message resource JSON for create and fetch responses."""
    return {
        "account_sid": delivery.account_id,
        "api_version": API_VERSION,
        "body": delivery.body,
        "date_created": rfc2822(delivery.created),
        "date_sent": rfc2822(delivery.sent),
        "date_updated": rfc2822(delivery.updated),
        "direction": DIRECTIONS[delivery.direction],
        "error_code": delivery.error_code,
        "error_message": delivery.error_message,
        "from": delivery.from_,
        "messaging_service_sid": None,
        "num_media": str(len(delivery.media)),
        "num_segments": str(delivery.segment_count),
        "price": None,
        "price_unit": "USD",
        "sid": delivery.id,
        "status": delivery.status,
        "subresource_uris": {"media": message_uri(delivery, "/Media.json")},
        "to": delivery.to,
        "uri": message_uri(delivery),
    }


def callback_params(delivery: Delivery, status: str, outcome: Outcome) -> dict:
    """Build the form fields of a status callback for one status."""
    params = {
        "AccountSid": delivery.account_id,
        "ApiVersion": API_VERSION,
        "From": delivery.from_,
        "MessageSid": delivery.id,
        "MessageStatus": status,
        "SmsSid": delivery.id,
        "SmsStatus": status,
        "To": delivery.to,
    }
    if status in FAILURE_STATUSES:
        params["ErrorCode"] = str(outcome.twilio_error_code)
        params["ErrorMessage"] = outcome.twilio_error_message
    return params


def inbound_params(delivery: Delivery, media_types: list[str]) -> dict:
    """Build the form fields of the inbound message webhook, with MediaUrlN and MediaContentTypeN."""
    params = {
        "AccountSid": delivery.account_id,
        "ApiVersion": API_VERSION,
        "Body": delivery.body,
        "From": delivery.from_,
        "MessageSid": delivery.id,
        "NumMedia": str(len(delivery.media)),
        "NumSegments": str(delivery.segment_count),
        "SmsMessageSid": delivery.id,
        "SmsSid": delivery.id,
        "SmsStatus": "received",
        "To": delivery.to,
    }
    for index, (url, content_type) in enumerate(zip(delivery.media, media_types, strict=True)):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = content_type
    return params


def signed_callback(url: str, params: dict, auth_token: str, event: str) -> Callback:
    """Build a form post signed with X-Twilio-Signature over the exact URL and all fields."""
    signature = RequestValidator(auth_token).compute_signature(url, params)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
        "X-Twilio-Signature": signature,
    }
    return Callback(url=url, event=event, headers=headers, form=params)


def status_step(delivery: Delivery, status: str, outcome: Outcome, is_last: bool, auth_token: str) -> Step:
    """Build the step for one Twilio status, with its callback when StatusCallback was given."""
    failed = status in FAILURE_STATUSES
    url = delivery.details.get("status_callback")
    callback = None
    if url:
        callback = signed_callback(url, callback_params(delivery, status, outcome), auth_token, status)
    return Step(
        status=status,
        error_code=outcome.twilio_error_code if failed else None,
        error_message=outcome.twilio_error_message if failed else None,
        reaches_phone=is_last and outcome.reaches_phone,
        callback=callback,
    )


def delivery_steps(delivery: Delivery, outcome: Outcome, auth_token: str) -> list[Step]:
    """Build the status steps of a Twilio message, which sends no callback for the initial queued."""
    statuses = outcome.twilio_statuses
    return [
        status_step(delivery, status, outcome, index == len(statuses) - 1, auth_token)
        for index, status in enumerate(statuses)
    ]
