"""Stand-in for Twilio's Lookup v2 API: format, validity and line type by the number's last two digits."""

import re

import flask
import phonenumbers

from sandbox.outcomes import SUFFIX_OUTCOMES
from sandbox.request_log import log_requests_of
from sandbox.twilio_api import TwilioError, render_twilio_error

blueprint = log_requests_of(flask.Blueprint("twilio_lookup", __name__, url_prefix="/v2"))
blueprint.register_error_handler(TwilioError, render_twilio_error)

E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
# Data packages that the sandbox does not simulate. The SDK's PhoneNumberInstance reads each
# of them, and Twilio returns null for a package that was not requested.
NULL_PACKAGES = (
    "caller_name",
    "sim_swap",
    "call_forwarding",
    "line_status",
    "identity_match",
    "reassigned_number",
    "sms_pumping_risk",
    "phone_number_quality_score",
    "pre_fill",
)
# Reasons that phonenumbers gives for an impossible number, as Twilio's validation_errors names them.
IMPOSSIBLE_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "INVALID_COUNTRY_CODE",
    phonenumbers.ValidationResult.TOO_SHORT: "TOO_SHORT",
    phonenumbers.ValidationResult.TOO_LONG: "TOO_LONG",
    phonenumbers.ValidationResult.INVALID_LENGTH: "INVALID_LENGTH",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "INVALID_LENGTH",
}
# MCC 001 with MNC 01 is the ITU test network, so no real carrier is named.
TEST_NETWORK_MCC = "001"
TEST_NETWORK_MNC = "01"


def authenticate() -> None:
    """Raise 20003 unless the request has basic auth with a non-empty username and password."""
    auth = flask.request.authorization
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        raise TwilioError(20003, "Authenticate: basic auth must be an AccountSid and its auth token.", 401)


def not_found() -> TwilioError:
    """Build the 404 error with Twilio's not-found code 20404 for the requested path."""
    return TwilioError(20404, f"The requested resource {flask.request.path} was not found", 404)


def parse_number(number: str) -> phonenumbers.PhoneNumber:
    """Parse an E.164 number from the path, or raise 20404."""
    # NOTE: real Lookup v2 may return 200 with valid false for some malformed numbers instead
    # of 404. The sandbox has not been compared with it on such input.
    if not E164_PATTERN.match(number):
        raise not_found()
    try:
        return phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise not_found() from None


def validation_errors(number: str, parsed: phonenumbers.PhoneNumber) -> list[str]:
    """Return Twilio's validation_errors: why the number is impossible, or invalid by its suffix."""
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason in IMPOSSIBLE_REASONS:
        return [IMPOSSIBLE_REASONS[reason]]
    if SUFFIX_OUTCOMES.get(number[-2:]) == "invalid_number":
        return ["INVALID_BUT_POSSIBLE"]
    return []


def line_type_intelligence(number: str) -> dict:
    """Build the line_type_intelligence package: a landline for the landline suffix, else mobile."""
    if SUFFIX_OUTCOMES.get(number[-2:]) == "landline":
        return {
            "type": "landline",
            "carrier_name": "Sandbox Telephone",
            "mobile_country_code": TEST_NETWORK_MCC,
            "mobile_network_code": None,
            "error_code": None,
        }
    return {
        "type": "mobile",
        "carrier_name": "Sandbox Wireless",
        "mobile_country_code": TEST_NETWORK_MCC,
        "mobile_network_code": TEST_NETWORK_MNC,
        "error_code": None,
    }


def phone_number_resource(number: str, parsed: phonenumbers.PhoneNumber, fields: set[str]) -> dict:
    """Build the PhoneNumber resource, with line_type_intelligence only when it was requested."""
    errors = validation_errors(number, parsed)
    line_type = line_type_intelligence(number) if "line_type_intelligence" in fields else None
    return {
        "calling_country_code": str(parsed.country_code),
        # The main region of the calling code, so every +1 number reads as "US".
        "country_code": phonenumbers.region_code_for_country_code(parsed.country_code),
        "phone_number": number,
        "national_format": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
        "valid": not errors,
        "validation_errors": errors,
        "line_type_intelligence": line_type,
        **dict.fromkeys(NULL_PACKAGES),
        "url": f"{flask.request.host_url.rstrip('/')}/v2/PhoneNumbers/{number}",
    }


@blueprint.get("/PhoneNumbers/<number>")
def fetch_phone_number(number: str) -> flask.Response:
    """Look up one E.164 number, with the data packages named in the comma-separated Fields."""
    authenticate()
    parsed = parse_number(number)
    fields = {field.strip() for field in flask.request.args.get("Fields", "").split(",") if field.strip()}
    return flask.jsonify(phone_number_resource(number, parsed, fields))
