"""The console's forms (Flask-WTF): every one carries a CSRF token.

Validation here is only about shape (required, lengths, types); the domain modules decide what
is acceptable and say why, and the views show their messages next to the field.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    FieldList,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from hotline.accounts import MIN_PASSWORD
from hotline.roster import KNOWN_DISCIPLINES, MAX_CONVERSATIONS
from hotline.rotation import WEEKDAYS

LOCAL = "%Y-%m-%dT%H:%M"
ROTATION_SLOTS = 6


def options(pairs: Iterable[tuple[object, str]]) -> list[SelectChoice]:
    """Select choices from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


class SignInForm(FlaskForm):  # type: ignore[misc]
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class PasswordForm(FlaskForm):  # type: ignore[misc]
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=1024)],
        description=f"At least {MIN_PASSWORD} characters.",
    )
    repeat = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", message="The two new passwords differ.")],
    )


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: nothing but the CSRF token."""


class ProgrammeForm(FlaskForm):  # type: ignore[misc]
    programme_id = SelectField("Programme", coerce=int)


class SupporterForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    phone = StringField(
        "Mobile number",
        validators=[DataRequired(), Length(max=32)],
        description="e.g. +15551234567",
    )
    discipline = SelectField(
        "Discipline",
        validate_choice=False,  # the roster checks it, with a message naming the choices
        choices=options([("", "Any / not given")] + [(d, d.title()) for d in KNOWN_DISCIPLINES]),
    )
    max_conversations = IntegerField(
        "Most conversations at once",
        default=2,
        validators=[DataRequired(), NumberRange(1, MAX_CONVERSATIONS)],
    )
    email = StringField("Email (optional)", validators=[Optional(), Length(max=254)])
    active = BooleanField("Active", default=True)


class CodeForm(FlaskForm):  # type: ignore[misc]
    code = StringField("Code the supporter received", validators=[DataRequired(), Length(max=20)])


class ImportForm(FlaskForm):  # type: ignore[misc]
    file = FileField("CSV file")
    text = TextAreaField("…or paste the CSV here", validators=[Length(max=256 * 1024)])


class ShiftForm(FlaskForm):  # type: ignore[misc]
    supporter_id = SelectField("Supporter", coerce=int)
    starts_at = DateTimeLocalField("Starts", format=LOCAL, validators=[DataRequired()])
    ends_at = DateTimeLocalField("Ends", format=LOCAL, validators=[DataRequired()])


class OverrideForm(ShiftForm):
    covers_for_id = SelectField("Covers for", coerce=int)


class RotationForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    handoff_weekday = SelectField(
        "Hand-off day", coerce=int, choices=options((i, d.title()) for i, d in enumerate(WEEKDAYS))
    )
    handoff_time = TimeField("Hand-off time (local)", validators=[DataRequired()])
    anchor_date = DateField("Starting on or after", validators=[DataRequired()])
    members = FieldList(
        SelectField("Turn", coerce=int, default=0, validate_choice=False),
        min_entries=ROTATION_SLOTS,
    )


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=100)],
        description='Who or what will use it, e.g. "staff directory sync".',
    )
    every_programme = BooleanField("For every programme (not only this one)")
    expires_in = SelectField(
        "Expires",
        choices=options(
            [("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"), ("", "never")]
        ),
        default="90",
        description="After this it is refused, as a revoked token is; make a new one then.",
    )


class SettingsForm(FlaskForm):  # type: ignore[misc]
    greeting = TextAreaField("Greeting", validators=[Length(max=1000)])
    call_greeting = TextAreaField("Spoken greeting (calls)", validators=[Length(max=500)])
    crisis_text = TextAreaField("Crisis sentence", validators=[Length(max=500)])
    resources_text = TextAreaField(
        "Resources (next level of support)", validators=[Length(max=1500)]
    )
    checkin_text = TextAreaField("Check-in text", validators=[Length(max=500)])
    checkin_offsets = StringField("Check-in cadence", validators=[Length(max=200)])
    checkin_hours = StringField("Check-in hours", validators=[Length(max=20)])
    timezone = StringField("Time zone", validators=[Length(max=64)])
    offer_timeout = StringField("Seconds to accept an offer", validators=[Length(max=6)])
    pool_numbers = StringField("Replace pool numbers with", validators=[Length(max=500)])
    alert_phone = StringField("Replace alert phone with", validators=[Length(max=32)])
    clear_alert_phone = BooleanField("Remove the alert phone")
    reminder_minutes = StringField("Shift reminder, minutes before", validators=[Length(max=6)])
    gap_warning_hours = StringField(
        "Text coverage-gap warnings, hours ahead", validators=[Length(max=6)]
    )
    # The settings as the page showed them (programme_settings.version).
    version = HiddenField(validators=[Length(max=64)])
