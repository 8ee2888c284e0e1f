"""``/console/roster``: supporters (phones masked), adding, editing, verifying, CSV import."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from console import auth
from console.context import now, services, wake
from console.forms import ActionForm, CodeForm, ImportForm, SupporterForm
from console.present import advice, masked_phone
from hotline import feeds, onboarding, reach, roster, verification
from hotline.db import transaction
from hotline.models import Supporter

bp = Blueprint("roster", __name__, url_prefix="/roster")


def _supporter(db: Session, supporter_id: int) -> Supporter:
    found = roster.get(db, {auth.programme_id()}, supporter_id)
    if found is None:
        abort(404)
    return found


def _rows(db: Session) -> list[dict[str, Any]]:
    vault = services().vault
    listed = roster.listing(db, auth.programme_id())
    refusals = reach.refusals(db, listed)
    return [
        {
            "supporter": s,
            "phone": masked_phone(vault, s),
            "pending": verification.pending(db, s.id),
            "refused": _refused(refusals.get(s.id)),
        }
        for s in listed
    ]


def _refused(refusal: reach.Refusal | None) -> str | None:
    """The roster's word on a phone that refuses the line's texts (None: it takes them)."""
    return advice(refusal) if refusal is not None else None


@bp.get("")
def index() -> ResponseReturnValue:
    return _index_page()


def _index_page(form: SupporterForm | None = None) -> str:
    with services().sessions() as db:
        rows = _rows(db)
    return render_template("console/roster.html", rows=rows, form=form or SupporterForm())


@bp.post("")
def add() -> ResponseReturnValue:
    form = SupporterForm()
    if not form.validate_on_submit():
        return _index_page(form), 422
    data = roster.SupporterInput(
        name=form.name.data,
        phone=form.phone.data,
        discipline=form.discipline.data or None,
        max_conversations=form.max_conversations.data,
        email=form.email.data or None,
        active=form.active.data,
    )
    try:
        with transaction(services().sessions) as db:
            change = roster.add(
                db, services().vault, auth.programme_id(), data, auth.user().email, now()
            )
            supporter_id, phone = (
                change.supporter.id,
                masked_phone(services().vault, change.supporter),
            )
    except roster.RosterError as error:
        _field_error(form, error)
        return _index_page(form), 422
    wake(change.notices)
    flash(f"Added. A code was texted to {phone}: enter it here once they have it.", "success")
    return redirect(url_for("console.roster.detail", supporter_id=supporter_id))


def _field_error(form: Any, error: roster.RosterError) -> None:
    field = getattr(form, error.field or "", None)
    if field is not None:
        field.errors = [*field.errors, str(error)]
    else:
        flash(str(error), "error")


@bp.get("/<int:supporter_id>")
def detail(supporter_id: int) -> ResponseReturnValue:
    return _detail_page(supporter_id)


def _detail_page(supporter_id: int, form: SupporterForm | None = None) -> str:
    with services().sessions() as db:
        supporter = _supporter(db, supporter_id)
        pending = verification.pending(db, supporter.id)
        code = verification.code_state(db, pending, now()) if pending else None
        phone = masked_phone(services().vault, supporter)
        refused = _refused(reach.refusals(db, [supporter]).get(supporter.id))
    if form is None:
        form = SupporterForm(obj=supporter, phone="")
    form.phone.validators = []
    return render_template(
        "console/supporter.html",
        supporter=supporter,
        phone=phone,
        pending=pending,
        code=code,
        refused=refused,
        form=form,
        code_form=CodeForm(),
    )


@bp.post("/<int:supporter_id>")
def edit(supporter_id: int) -> ResponseReturnValue:
    form = SupporterForm()
    form.phone.validators = []
    if not form.validate_on_submit():
        return _detail_page(supporter_id, form), 422
    changes: dict[str, object] = {
        "name": form.name.data,
        "discipline": form.discipline.data or None,
        "max_conversations": form.max_conversations.data,
        "email": form.email.data or None,
        "active": bool(form.active.data),
    }
    if form.phone.data:
        changes["phone"] = form.phone.data
    try:
        with transaction(services().sessions) as db:
            supporter = _supporter(db, supporter_id)
            change = roster.edit(db, services().vault, supporter, changes, auth.user().email, now())
    except roster.RosterError as error:
        _field_error(form, error)
        return _detail_page(supporter_id, form), 422
    wake(change.notices, change.lapsed_offers)
    flash("Saved." + (" A code was texted to the new number." if change.notices else ""), "success")
    return redirect(url_for("console.roster.detail", supporter_id=supporter_id))


@bp.post("/<int:supporter_id>/code")
def confirm(supporter_id: int) -> ResponseReturnValue:
    form = CodeForm()
    if not form.validate_on_submit():
        flash("Enter the code the supporter received.", "error")
        return redirect(url_for("console.roster.detail", supporter_id=supporter_id))
    with transaction(services().sessions) as db:
        supporter = _supporter(db, supporter_id)
        outcome = roster.confirm_code(
            db, services().vault, supporter, form.code.data, auth.user().email, now()
        )
    ok = outcome == verification.Outcome.VERIFIED
    flash(verification.MESSAGES[outcome], "success" if ok else "error")
    return redirect(url_for("console.roster.detail", supporter_id=supporter_id))


@bp.post("/<int:supporter_id>/resend")
def resend(supporter_id: int) -> ResponseReturnValue:
    if ActionForm().validate_on_submit():
        try:
            with transaction(services().sessions) as db:
                supporter = _supporter(db, supporter_id)
                change = roster.resend_code(
                    db, services().vault, supporter, auth.user().email, now()
                )
        except roster.RosterError as error:
            flash(str(error), "error")
        else:
            wake(change.notices)
            flash("A new code was texted.", "success")
    return redirect(url_for("console.roster.detail", supporter_id=supporter_id))


@bp.post("/<int:supporter_id>/calendar")
def new_calendar_link(supporter_id: int) -> ResponseReturnValue:
    if ActionForm().validate_on_submit():
        with transaction(services().sessions) as db:
            supporter = _supporter(db, supporter_id)
            feeds.new_supporter_link(db, supporter, auth.user().email, now())
        flash("New calendar link: the old one no longer works.", "success")
    return redirect(url_for("console.roster.detail", supporter_id=supporter_id))


@bp.post("/<int:supporter_id>/deactivate")
def deactivate(supporter_id: int) -> ResponseReturnValue:
    if ActionForm().validate_on_submit():
        with transaction(services().sessions) as db:
            supporter = _supporter(db, supporter_id)
            change = roster.deactivate(db, services().vault, supporter, auth.user().email, now())
        wake(change.notices, change.lapsed_offers)
        flash("Deactivated: they are off call until made active again.", "success")
    return redirect(url_for("console.roster.index"))


@bp.route("/import", methods=["GET", "POST"])
def import_csv() -> ResponseReturnValue:
    form = ImportForm()
    report = None
    if form.validate_on_submit():
        upload = form.file.data
        text = upload.read(onboarding.MAX_BYTES + 1).decode("utf-8", "replace") if upload else ""
        try:
            with transaction(services().sessions) as db:
                report = onboarding.import_csv(
                    db,
                    services().vault,
                    auth.programme_id(),
                    text or form.text.data or "",
                    auth.user().email,
                    now(),
                )
        except onboarding.ImportFileError as error:
            flash(str(error), "error")
        if report is not None:
            wake(report.notices)
    return render_template("console/import.html", form=form, report=report)
