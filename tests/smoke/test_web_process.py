"""The web process exactly as the Procfile starts it (gunicorn): it serves, and its access log
keeps the calendar feeds' secret URLs out."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from sqlalchemy import select

from hotline import feeds
from hotline.db import transaction
from hotline.models import Supporter
from tests.kit.harness import Hotline
from tests.kit.harness import test_env as environment_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sqlite_only  # the process, not the database, is under test


def procfile_web(port: int) -> list[str]:
    (line,) = [
        text.removeprefix("web:").strip()
        for text in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
        if text.startswith("web:")
    ]
    line = line.replace("${WEB_CONCURRENCY:-2}", "1").replace("$PORT", str(port))
    return shlex.split(line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return response.status, response.headers.get_content_type()


def test_the_procfile_web_process_logs_no_calendar_secret(hotline: Hotline, tmp_path: Path) -> None:
    hotline.add_supporter("Alice", "+15550108001")
    token = feeds.new_token()
    with transaction(hotline.services.sessions) as session:
        session.scalars(select(Supporter)).one().calendar_token = token
    port = free_port()
    env = {
        **environment_for(hotline.settings.database_url, hotline.fake),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOTLINE_INSTANCE_PATH": str(tmp_path),
        "HOME": str(tmp_path / "home"),
    }
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        web = subprocess.Popen(
            procfile_web(port),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                fetch(f"{base}/healthz")
                break
            except OSError:
                assert web.poll() is None, log_path.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.1)
        assert fetch(f"{base}/calendar/supporter/{token}.ics") == (200, "text/calendar")
        # No gunicorn control socket (on by default since gunicorn 25.1, in $HOME): any process
        # of the same user could resize or stop the web process through it, and two on one
        # host would contend for the one path.
        assert not (tmp_path / "home" / ".gunicorn").exists()
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(30)
    logged = log_path.read_text(encoding="utf-8")
    assert '"GET /calendar/supporter/[secret].ics" 200' in logged
    assert token not in logged


def test_the_access_log_masks_a_feed_token_in_any_format(tmp_path: Path) -> None:
    """An operator may log the request line, the referrer or any header: none shows a token."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from hotline.accesslog import AccessLog

    token = feeds.new_token()
    path = f"/calendar/programme/{token}.ics"
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("errorlog", str(tmp_path / "error.log"))
    config.set("access_log_format", "%(r)s %(U)s %(f)s %({referer}i)s %({raw_uri}e)s")
    log = AccessLog(config)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": path,
        "PATH_INFO": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": f"https://hotline.example.org{path}",
    }
    request = SimpleNamespace(headers=[("REFERER", f"https://hotline.example.org{path}")])
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    log.access(response, request, environ, timedelta(milliseconds=3))
    log.error("Error handling request %s", path)
    log.warning(f"Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET {path}'")
    logged = (tmp_path / "access.log").read_text(encoding="utf-8")
    errors = (tmp_path / "error.log").read_text(encoding="utf-8")
    assert logged.count("/calendar/programme/[secret].ics") == 5
    assert errors.count("/calendar/programme/[secret].ics") == 2
    assert token not in logged + errors


def test_a_bad_setting_stops_the_procfile_web_process_with_one_line(tmp_path: Path) -> None:
    """The IT team's first deploy with a setting missing: gunicorn's master stops at once and
    its log says which setting, without a traceback from each worker it boots."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOTLINE_ENV": "production",
        "HOTLINE_NUMBER": "+15550100000",
        "HOTLINE_INSTANCE_PATH": str(tmp_path),
    }
    web = subprocess.run(
        procfile_web(free_port()),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    logged = web.stdout + web.stderr
    assert web.returncode != 0, logged
    assert "hotline: TWILIO_ACCOUNT_SID is required when HOTLINE_ENV=production" in logged
    assert "App failed to load" in logged
    assert "Traceback" not in logged, logged


def test_the_procfile_serves_on_every_interface_and_runs_the_worker_and_the_release() -> None:
    """CONTRACT.md's Procfile: a platform routes to ``0.0.0.0:$PORT`` (a web process bound
    to loopback answers the tests above and nobody else); ``hotline worker`` runs RQ with the
    scheduler and the sweeper (tests/resilience/test_faults.py runs it as this line does)."""
    lines = dict(
        text.split(":", 1) for text in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    )
    web = shlex.split(lines["web"])
    assert web[0] == "gunicorn" and web[web.index("--bind") + 1] == "0.0.0.0:$PORT"
    assert shlex.split(lines["worker"]) == ["hotline", "worker"]
    assert shlex.split(lines["release"]) == ["hotline", "db", "upgrade"]


def test_every_gunicorn_the_project_allows_takes_the_procfile_s_options() -> None:
    """``--no-control-socket`` came with gunicorn 25.1.0. ``gunicorn>=25`` let an install
    (a pinned or cached 25.0.x) have a gunicorn that stops at once on that unknown option:
    the web process never served, and every text and call went to Twilio's fallback."""
    web = (ROOT / "Procfile").read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (gunicorn,) = [
        Requirement(d) for d in project["project"]["dependencies"] if d.startswith("gunicorn")
    ]
    assert "--no-control-socket" in web
    assert not gunicorn.specifier.contains("25.0.3"), gunicorn
