"""The dev phone page (development only). Being built: see hotline/dev.py."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("devphone", __name__, url_prefix="/dev")
