"""Start-up settings: each value out of its range stops the process with the variable, the value and the fix."""

import pytest

import config


def load():
    return config.load({"PAWPOST_ENV": "development"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEND_CONCURRENCY", "0"),
        ("SEND_CONCURRENCY", "65"),
        ("SEND_CONCURRENCY", "-3"),
        ("IDEMPOTENCY_KEY_HOURS", "0"),
        ("CALLBACK_CREDENTIALS_SECONDS", "-1"),
        ("PORTAL_TOKEN_DAYS", "0"),
        ("PORTAL_TOKEN_DAYS", "3000000"),
        ("REMEMBER_DAYS", "-5"),
        ("REMEMBER_DAYS", "10000000000"),
        ("SEND_TIMEOUT_SECONDS", "0"),
        ("SMS_MAX_ATTEMPTS", "0"),
        ("EMAIL_MAX_ATTEMPTS", "-3"),
        ("PUSH_MAX_ATTEMPTS", "0"),
        ("RETRY_BASE_SECONDS", "-3"),
        ("RETRY_MAX_SECONDS", "0"),
        ("SMS_VALIDITY_SECONDS", "-1"),
        ("SMS_VALIDITY_SECONDS", "36001"),
        ("STUCK_SENDING_SECONDS", "0"),
        ("RECEIPT_TIMEOUT_SECONDS", "0"),
        ("MEDIA_URL_HOURS", "0"),
        ("SENDER_RATE", "-1"),
        ("PACING_MARGIN_MS", "-2000"),
    ],
)
def test_setting_out_of_range_rejected(monkeypatch, name, value):
    monkeypatch.setenv(f"PAWPOST_{name}", value)

    with pytest.raises(config.ConfigError, match=f"PAWPOST_{name}={value} is out of range. Use a number"):
        load()


def test_remember_days_set_cookie_duration(monkeypatch):
    monkeypatch.setenv("PAWPOST_REMEMBER_DAYS", "14")

    settings = load()

    assert settings["REMEMBER_COOKIE_DURATION"].days == 14


def test_retry_base_over_maximum_rejected(monkeypatch):
    monkeypatch.setenv("PAWPOST_RETRY_BASE_SECONDS", "600")
    monkeypatch.setenv("PAWPOST_RETRY_MAX_SECONDS", "300")

    with pytest.raises(config.ConfigError, match="RETRY_BASE_SECONDS=600 is longer than PAWPOST_RETRY_MAX_SECONDS=300"):
        load()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("API_RATE_LIMIT", "lots", "is not a rate limit"),
        ("TRUSTED_PROXIES", "proxy.internal", "is not an IP address or network"),
        ("TRUSTED_PROXIES", "10.0.0.5,10.0.0.1/33", "is not an IP address or network"),
        ("SENDER_RATES", "+15550001111=99999999999999999999", "whose rate is out of range"),
        ("BASE_URL", "https://pawpost.example.com ", "no spaces"),
        ("BASE_URL", "http://:80", "with a host"),
        ("BASE_URL", "https://exa mple.com", "no spaces"),
        ("BASE_URL", "https://pawpost.example.com:99999", "a valid port"),
    ],
    ids=["rate_word", "proxy_host_name", "proxy_bad_prefix", "sender_rate_huge", "base_trailing_space", "base_no_host",
         "base_space_in_host", "base_bad_port"],
)
def test_bad_setting_rejected(monkeypatch, name, value, message):
    monkeypatch.setenv(f"PAWPOST_{name}", value)

    with pytest.raises(config.ConfigError, match=message) as raised:
        load()
    assert f"PAWPOST_{name}" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_RATE_LIMIT", "100 per second"),
        ("TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16, ::1"),
        ("SENDER_RATES", "+15550001111=225"),
        ("BASE_URL", "https://pawpost.example.com:8443"),
    ],
    ids=["rate", "proxies", "sender_rates", "base_with_port"],
)
def test_good_setting_accepted(monkeypatch, name, value):
    monkeypatch.setenv(f"PAWPOST_{name}", value)

    settings = load()

    assert settings[f"PAWPOST_{name}"] == value


@pytest.mark.parametrize(("text", "level"), [("info", "INFO"), (" WARNING ", "WARNING"), ("debug", "DEBUG")])
def test_log_level_named_accepted(text, level):
    assert config.check_log_level(text) == level


def test_log_level_unknown_rejected():
    with pytest.raises(config.ConfigError, match="PAWPOST_LOG_LEVEL='LOUD' is not a log level. Use one of DEBUG"):
        config.check_log_level("LOUD")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://pawpost:secret@db.example.com/pawpost", "DATABASE_URL starts with 'mysql'"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL starts with 'localhost'"),
    ],
    ids=["database_mysql", "redis_no_scheme"],
)
def test_service_url_rejected(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)

    with pytest.raises(config.ConfigError, match=message) as raised:
        load()
    assert "secret" not in str(raised.value)
