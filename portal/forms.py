"""Flask-WTF forms; each carries a CSRF token."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length

from notifier.sending import MAX_BODY_CHARS


class StaffLoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Stay signed in")


class SendTextForm(FlaskForm):
    body = TextAreaField("Message", validators=[DataRequired(), Length(max=MAX_BODY_CHARS)])


class NewConversationForm(SendTextForm):
    to = StringField("Mobile number", validators=[DataRequired(), Length(max=40)])


class ConfirmForm(FlaskForm):
    """A form with only the CSRF token, for one-button confirmations."""
