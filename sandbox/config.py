"""Sandbox configuration: defaults, validation and reloading from a JSON file."""

import json
import logging
import os
import re
import threading

import flask

logger = logging.getLogger("sandbox")

DEFAULTS = {
    "bandwidth_applications": {},
    "callback_delay": 0.2,
    "duplicate_callbacks": False,
    "allowed_link_prefix": None,
    "numbers": {},
}
APPLICATION_KEYS = ("callback_url", "username", "password")
# Keys each clinic number entry must have, besides "provider".
NUMBER_KEYS = {
    "twilio": ("inbound_url", "account_sid", "auth_token"),
    "bandwidth": ("application_id", "account_id"),
}
E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
URL_PATTERN = re.compile(r"^https?://[^\s/]+")


def validate_application(application_id: str, application: object) -> dict:
    """Return one Bandwidth application entry with missing keys set to None."""
    if not isinstance(application, dict):
        raise ValueError(f"bandwidth_applications[{application_id!r}] must be an object.")
    unknown = set(application) - set(APPLICATION_KEYS)
    if unknown:
        raise ValueError(
            f"bandwidth_applications[{application_id!r}] has unknown keys {sorted(unknown)}. "
            f"Use {list(APPLICATION_KEYS)}."
        )
    for key in APPLICATION_KEYS:
        value = application.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"bandwidth_applications[{application_id!r}].{key} must be a string.")
    return {key: application.get(key) for key in APPLICATION_KEYS}


def validate_number(number: object, entry: object, applications: dict) -> dict:
    """Return one clinic number entry, or raise ValueError if it is invalid."""
    name = f"numbers[{number!r}]"
    if not isinstance(number, str) or not E164_PATTERN.match(number):
        raise ValueError(f"{name}: the key must be an E.164 number such as +15550000001.")
    if not isinstance(entry, dict) or entry.get("provider") not in NUMBER_KEYS:
        raise ValueError(f"{name} must be an object whose provider is 'twilio' or 'bandwidth'.")
    required = NUMBER_KEYS[entry["provider"]]
    unknown = set(entry) - {"provider", *required}
    if unknown:
        raise ValueError(f"{name} has unknown keys {sorted(unknown)}. Use {['provider', *required]}.")
    for key in required:
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"{name}.{key} is missing. Set it to a non-empty string.")
    if entry["provider"] == "twilio" and not URL_PATTERN.match(entry["inbound_url"]):
        raise ValueError(f"{name}.inbound_url is invalid. Use an absolute http(s) URL.")
    if entry["provider"] == "bandwidth" and entry["application_id"] not in applications:
        raise ValueError(
            f"{name}.application_id {entry['application_id']!r} is not configured. "
            "Add it to bandwidth_applications."
        )
    return dict(entry)


def validate_scalars(config: dict) -> None:
    """Raise ValueError if callback_delay, duplicate_callbacks or allowed_link_prefix is invalid."""
    delay = config["callback_delay"]
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"callback_delay={delay!r} is invalid. Use a number of seconds >= 0.")
    if not isinstance(config["duplicate_callbacks"], bool):
        raise ValueError("duplicate_callbacks must be true or false.")
    prefix = config["allowed_link_prefix"]
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ValueError("allowed_link_prefix must be a non-empty string or null.")


def normalize_config(raw: dict | None) -> dict:
    """Return a complete config from the given keys and the defaults, or raise ValueError."""
    raw = dict(raw or {})
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown sandbox config keys {sorted(unknown)}. Use {sorted(DEFAULTS)}.")
    config = {**DEFAULTS, **raw}
    validate_scalars(config)
    applications = config["bandwidth_applications"]
    if not isinstance(applications, dict):
        raise ValueError("bandwidth_applications must be an object keyed by application id.")
    config["bandwidth_applications"] = {
        app_id: validate_application(app_id, entry) for app_id, entry in applications.items()
    }
    if not isinstance(config["numbers"], dict):
        raise ValueError("numbers must be an object keyed by E.164 clinic number.")
    config["numbers"] = {
        number: validate_number(number, entry, config["bandwidth_applications"])
        for number, entry in config["numbers"].items()
    }
    return config


class ConfigFileWatcher:
    """Reload the sandbox config from a JSON file whenever the file's mtime changes."""

    def __init__(self, path: str, state) -> None:
        self.path = path
        self.state = state
        self.loaded_mtime: float | None = None
        # mtime of the last invalid read, so an invalid file is logged once, not on every request.
        self.failed_mtime: float | None = None
        self.lock = threading.Lock()

    def current_mtime(self) -> float | None:
        """Return the file's mtime, or None while the file does not exist."""
        try:
            return os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None

    def reload_if_changed(self) -> None:
        """Apply the file's config unless it is unchanged since the last successful load."""
        with self.lock:
            mtime = self.current_mtime()
            if mtime is None or mtime == self.loaded_mtime:
                return
            # An invalid read is retried on the next request, because a writer may still be
            # filling the file within the same mtime tick.
            if self.load(log_errors=mtime != self.failed_mtime):
                self.loaded_mtime = mtime
            else:
                self.failed_mtime = mtime

    def load(self, log_errors: bool) -> bool:
        """Read, validate and apply the file, and return whether it was valid."""
        try:
            with open(self.path, encoding="utf-8") as config_file:
                config = normalize_config(json.load(config_file))
        except (OSError, ValueError) as error:
            # json.JSONDecodeError is a ValueError, so a half-written file lands here too.
            if log_errors:
                logger.error("Sandbox config %s is invalid, keeping the previous config: %s", self.path, error)
            return False
        self.state.set_config(config)
        logger.info("Loaded sandbox config from %s", self.path)
        return True


def watch_config_file(app: flask.Flask, path: str) -> ConfigFileWatcher:
    """Load the config file now and again before each request whenever its mtime changes."""
    watcher = ConfigFileWatcher(path, app.extensions["sandbox"])
    watcher.reload_if_changed()
    if watcher.current_mtime() is None:
        logger.warning("Sandbox config %s does not exist yet, so defaults apply until it does.", path)
    app.before_request(watcher.reload_if_changed)
    return watcher
