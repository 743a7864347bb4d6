"""Flask-WTF forms; each carries a CSRF token."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, EmailField, MultipleFileField, PasswordField, StringField, TextAreaField
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import DataRequired, Email, Length

from notifier.sending import MAX_BODY_CHARS


class StaffLoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Stay signed in")


def typed_text(value):
    """Return a textarea's text as typed: line breaks as one character each, no surrounding blanks.

    Browsers count a line break as one character against ``maxlength`` but post it as CR LF, so
    a text at the limit would otherwise fail the length check.
    """
    if value is None:
        return None
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


class SendTextForm(FlaskForm):
    body = TextAreaField("Message", validators=[Length(max=MAX_BODY_CHARS)], filters=[typed_text])
    attachments = MultipleFileField("Photos or videos")


class NewConversationForm(SendTextForm):
    to = StringField("Mobile number", validators=[DataRequired(), Length(max=40)])


class ConfirmForm(FlaskForm):
    """A form with only the CSRF token, for one-button confirmations."""


class ConfirmLinkForm(FlaskForm):
    """The one-button form that spends a pointer or email link."""

    remember = BooleanField("Stay signed in on this device")


class CodeRequestForm(FlaskForm):
    address = StringField(
        "Email address or mobile number",
        validators=[DataRequired("Enter the email address or mobile number your clinic has for you."), Length(max=254)],
    )


class CodeEntryForm(FlaskForm):
    code = StringField("Sign-in code", validators=[DataRequired("Enter the 6-digit code we sent you."), Length(max=20)])
    remember = BooleanField("Stay signed in on this device")


class ReplyForm(FlaskForm):
    body = TextAreaField("Message", validators=[Length(max=MAX_BODY_CHARS)], filters=[typed_text])
    photo = FileField("Photo")


class PreferencesForm(FlaskForm):
    """Channel choices of a pet parent; the view sets the clinics that can email them."""

    email_clients = SelectMultipleField(
        "Email me new messages", coerce=int, widget=ListWidget(prefix_label=False), option_widget=CheckboxInput()
    )
    push = BooleanField("Send push notifications to devices where I turned them on")
