"""Bandwidth Messaging API v2 response bodies, status callback events and inbound events."""

from sandbox.callbacks import Callback, Step
from sandbox.outcomes import Outcome
from sandbox.state import Delivery, iso_utc, utc_now

CALLBACK_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "User-Agent": "BandwidthAPI/v2",
}


def error_body(error_type: str, description: str, field_errors: list[dict] | None = None) -> dict:
    """Build Bandwidth's error body, with fieldErrors only for request-validation errors."""
    body = {"type": error_type, "description": description}
    if field_errors is not None:
        body["fieldErrors"] = field_errors
    return body


def optional_fields(delivery: Delivery) -> dict:
    """Return media, tag and expiration, each only if the request had it."""
    fields = {}
    if delivery.media:
        fields["media"] = list(delivery.media)
    for key in ("tag", "expiration"):
        if delivery.details.get(key) is not None:
            fields[key] = delivery.details[key]
    return fields


def message_resource(delivery: Delivery, text: str) -> dict:
    """Build the Message JSON of the create response and of callback events."""
    return {
        "id": delivery.id,
        "owner": delivery.from_,
        "applicationId": delivery.details["application_id"],
        "time": iso_utc(delivery.created),
        "segmentCount": delivery.segment_count,
        "direction": "out",
        "to": list(delivery.details["recipients"]),
        "from": delivery.from_,
        "text": text,
        "priority": delivery.details["priority"],
        **optional_fields(delivery),
    }


def list_item(delivery: Delivery) -> dict:
    """Build one entry of the GET /messages search result."""
    return {
        "messageId": delivery.id,
        "accountId": delivery.account_id,
        "sourceTn": delivery.from_,
        "destinationTn": delivery.to,
        "messageStatus": delivery.status,
        "messageDirection": "INBOUND" if delivery.direction == "inbound" else "OUTBOUND",
        "messageType": "mms" if delivery.media else "sms",
        "segmentCount": delivery.segment_count,
        "errorCode": delivery.error_code,
        "receiveTime": iso_utc(delivery.created),
        "carrierName": None,
        "messageLength": len(delivery.body),
        "attachmentCount": len(delivery.media),
        "recipientCount": len(delivery.details["recipients"]),
    }


def event(delivery: Delivery, event_type: str, description: str, error_code: int | None) -> dict:
    """Build one status callback event, with the text blank because Bandwidth keeps no copy."""
    body = {
        "type": event_type,
        # NOTE: the time is taken when the steps are built at create time, so it precedes
        # the actual post by the callback delay.
        "time": iso_utc(utc_now()),
        "to": delivery.to,
        "description": description,
        "message": message_resource(delivery, text=""),
    }
    if error_code is not None:
        body["errorCode"] = error_code
    return body


def received_event(delivery: Delivery) -> dict:
    """Build the message-received event of an inbound message, which carries its text and media."""
    message = {
        "id": delivery.id,
        "owner": delivery.to,
        "applicationId": delivery.details["application_id"],
        "time": iso_utc(delivery.created),
        "segmentCount": delivery.segment_count,
        "direction": "in",
        "to": [delivery.to],
        "from": delivery.from_,
        "text": delivery.body,
    }
    if delivery.media:
        message["media"] = list(delivery.media)
    return {
        "type": "message-received",
        "time": iso_utc(utc_now()),
        "description": "Incoming message received",
        "to": delivery.to,
        "message": message,
    }


def event_callback(delivery: Delivery, application: dict | None, event_body: dict) -> Callback | None:
    """Wrap one event in a JSON-array callback to the application's URL, if it has one."""
    if not application or not application.get("callback_url"):
        return None
    auth = None
    if application.get("username") and application.get("password"):
        auth = (application["username"], application["password"])
    return Callback(
        url=application["callback_url"],
        event=event_body["type"],
        headers=dict(CALLBACK_HEADERS),
        json_body=[event_body],
        auth=auth,
    )


def final_step(delivery: Delivery, outcome: Outcome, application: dict | None) -> Step:
    """Build the message-delivered or message-failed step."""
    if outcome.bandwidth_error_code is None:
        body = event(delivery, "message-delivered", outcome.bandwidth_description, None)
        return Step("DELIVERED", reaches_phone=True, callback=event_callback(delivery, application, body))
    body = event(delivery, "message-failed", outcome.bandwidth_description, outcome.bandwidth_error_code)
    return Step(
        "FAILED",
        error_code=outcome.bandwidth_error_code,
        error_message=outcome.bandwidth_description,
        callback=event_callback(delivery, application, body),
    )


def delivery_steps(delivery: Delivery, outcome: Outcome, application: dict | None) -> list[Step]:
    """Build the status steps of one recipient: message-sending for MMS, then the final event."""
    if not outcome.bandwidth_final_event:
        # The message reaches the phone, but Bandwidth never reports it.
        return [Step("SENT", reaches_phone=outcome.reaches_phone)]
    steps = []
    if delivery.media:
        body = event(delivery, "message-sending", "Message is sending to the carrier.", None)
        steps.append(Step("SENDING", callback=event_callback(delivery, application, body)))
    steps.append(final_step(delivery, outcome, application))
    return steps
