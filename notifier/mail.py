"""Email: send through SMTP (or, in development without a server, write .eml files), and compose
the email that notifies a client of a new message.

Logs name Message-IDs and Pawpost ids, never an address or a body.
"""

import logging
import os
import secrets
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from flask import current_app, render_template

import config
from portal.models import utcnow

log = logging.getLogger(__name__)

# SMTP codes about Pawpost's own account at the mail server, not about the recipient (RFC 4954).
SETUP_CODES = {530, 534, 535, 538}


class MailError(Exception):
    """Sending an email failed. ``temporary`` failures (SMTP 4xx, no connection) may succeed later."""

    def __init__(self, text, code=None, temporary=False):
        super().__init__(text)
        # The SMTP reply code as text, "connection" when no reply came, or "setup" for a problem
        # in Pawpost's own mail settings.
        self.code = code
        self.temporary = temporary

    @property
    def category(self):
        """Return ``temporary``, ``setup`` (Pawpost's mail account or server setup) or ``rejected``."""
        if self.temporary:
            return "temporary"
        if self.code == "setup":
            return "setup"
        if self.code and self.code.isdigit() and int(self.code) in SETUP_CODES:
            return "setup"
        return "rejected"


def configured():
    """Return True when this server can send email: a mail server is set, or it runs in development."""
    settings = current_app.config
    return bool(settings["PAWPOST_SMTP_URL"]) or settings["PAWPOST_ENV"] == "development"


def skip_reason(client):
    """Return why ``client`` gets no email for a message, or None when they should get one."""
    if not configured():
        return "not_configured"
    if not client.email_enabled:
        return "opted_out"
    if not client.email or client.email_verified_at is None:
        return "no_address"
    return None


def send_mail(to_address, subject, text, html, sender_name):
    """Send one email with a plain-text and an HTML part from "<sender_name> <PAWPOST_MAIL_FROM>".

    Returns the Message-ID. Raises MailError when the mail server does not take the email.
    """
    email = _build(to_address, subject, text, html, sender_name)
    url = current_app.config["PAWPOST_SMTP_URL"]
    if url:
        _send_smtp(email, config.parse_smtp_url(url))
        log.info("Email %s accepted by the mail server.", email["Message-ID"])
    elif current_app.config["PAWPOST_ENV"] == "development":
        path = _write_eml(email)
        log.info("Email %s written to %s (no PAWPOST_SMTP_URL in development).", email["Message-ID"], path)
    else:
        raise MailError("Email is off: PAWPOST_SMTP_URL is not set.", code="setup")
    return email["Message-ID"]


def _build(to_address, subject, text, html, sender_name):
    sender = current_app.config["PAWPOST_MAIL_FROM"]
    email = EmailMessage()
    # A clinic name with a line break would otherwise be rejected as a header.
    email["From"] = Address(display_name=" ".join(sender_name.split()), addr_spec=sender)
    email["To"] = to_address
    email["Subject"] = " ".join(subject.split())
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    # Asks mail servers and clients not to send out-of-office replies (RFC 3834).
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    return email


def _send_smtp(email, settings):
    timeout = current_app.config["PAWPOST_SEND_TIMEOUT_SECONDS"]
    smtp = None
    try:
        if settings.implicit_tls:
            smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(email)
    except smtplib.SMTPRecipientsRefused as exc:
        # One recipient per email, so its reply is the only one.
        code = next(iter(exc.recipients.values()))[0]
        raise _reply_error(code, "recipient") from None
    except smtplib.SMTPResponseException as exc:
        raise _reply_error(exc.smtp_code, "email") from None
    except smtplib.SMTPNotSupportedError:
        raise MailError("The mail server does not offer STARTTLS or AUTH as configured.", "setup") from None
    except ssl.SSLCertVerificationError:
        raise MailError("The mail server's TLS certificate is not trusted.", "setup") from None
    except (OSError, smtplib.SMTPException) as exc:
        # Refused connections, timeouts and dropped connections: the server may be back soon.
        raise MailError(f"The mail server connection failed ({type(exc).__name__}).", "connection", True) from None
    finally:
        if smtp is not None:
            _close(smtp)


def _reply_error(code, stage):
    # The server's reply text is left out: it often repeats the recipient's address.
    temporary = 400 <= code < 500
    kind = "temporarily refused" if temporary else "rejected"
    return MailError(f"The mail server {kind} the {stage} with SMTP {code}.", str(code), temporary)


def _close(smtp):
    # The email is already accepted when QUIT fails, so that failure must not cause a resend.
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _write_eml(email):
    folder = current_app.config["PAWPOST_MAIL_DIR"]
    os.makedirs(folder, exist_ok=True)
    name = f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.eml"
    path = os.path.join(folder, name)
    # Write then rename, so a mail viewer watching the folder never opens half a file.
    with open(path + ".part", "wb") as handle:
        handle.write(email.as_bytes())
    os.replace(path + ".part", path)
    return path


def notification(message, link):
    """Return the keyword arguments of ``send_mail`` for the email about ``message``, minus the address.

    ``link`` is the single-use sign-in link that opens the message in the Pet Portal.
    """
    clinic = message.clinic
    context = {
        "clinic": clinic,
        "message": message,
        "link": link,
        "attachment_count": sum(1 for attachment in message.attachments if attachment.storage_key),
        "link_days": current_app.config["PAWPOST_PORTAL_TOKEN_DAYS"],
        "portal_url": current_app.config["PAWPOST_BASE_URL"] + "/",
    }
    return {
        "subject": f"New message from {clinic.name}",
        "text": render_template("email/message.txt", **context),
        "html": render_template("email/message.html", **context),
        "sender_name": clinic.name,
    }
