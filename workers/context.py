"""The worker process's services, built once per process from the environment."""

from __future__ import annotations

import os

from hotline.services import Services

_installed: dict[int, Services] = {}


def install(services: Services) -> None:
    """Use ``services`` for jobs run by this process (tests, ``hotline dev``, the worker)."""
    _installed.clear()
    _installed[os.getpid()] = services


def services() -> Services:
    """This process's services; a forked child builds its own (no shared DB connections)."""
    pid = os.getpid()
    if pid not in _installed:
        from hotline.app import build_services
        from hotline.settings import load_settings

        _installed.clear()
        _installed[pid] = build_services(load_settings())
    return _installed[pid]
