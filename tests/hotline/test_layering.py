"""Arrows point inward: the domain imports no web, queue or Twilio library, and reads no
environment. Walks every module with ``ast``, so lazy imports inside functions count too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "hotline"
OUTER_PACKAGES = ("hotline", "webhooks", "workers", "console")

# Libraries of the edges: only the allowed modules below may import them.
EDGE_LIBRARIES = frozenset({"flask", "rq", "redis", "twilio", "fakeredis", "werkzeug"})
# Our own outer layers: the domain must not reach out to them either.
OUTER_LAYERS = frozenset({"webhooks", "workers", "console"})

# The composition roots and adapters: the only domain modules allowed to import the edges.
EDGE_ALLOWED = frozenset(
    {
        "hotline/app.py",  # the app factory
        "hotline/cli.py",  # the `hotline` command
        "hotline/dev.py",  # `hotline dev`: web + worker + simulator in one process
        "hotline/devphone.py",  # the simulator's web page
        "hotline/telephony/twilio_adapter.py",  # the Twilio adapter behind the Telephony port
    }
)
# Alembic is the migration tool's business alone.
ALEMBIC_ALLOWED_FILES = frozenset({"hotline/migrate.py"})
ALEMBIC_ALLOWED_FOLDER = "hotline/migrations/"

# The one module that reads the environment (CONTRACT.md: settings are built in one place).
ENVIRONMENT_ALLOWED = frozenset({"hotline/settings.py"})
ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


def modules(*packages: str) -> list[Path]:
    found = [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]
    return [p for p in found if ".venv" not in p.parts]


def name_of(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import anywhere in the module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def environment_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for ``os.environ``, ``os.getenv`` and ``from os import environ`` and kin."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            yield node.lineno, f"os.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
            for alias in node.names:
                if alias.name in ENVIRONMENT_NAMES:
                    yield node.lineno, f"from {node.module} import {alias.name}"


def top(module: str) -> str:
    return module.split(".")[0]


def alembic_allowed(name: str) -> bool:
    return name in ALEMBIC_ALLOWED_FILES or name.startswith(ALEMBIC_ALLOWED_FOLDER)


def layering_violations(path: Path, root: Path = ROOT) -> list[str]:
    name = name_of(path, root)
    found = []
    for line, module in imports(parse(path)):
        if top(module) in EDGE_LIBRARIES | OUTER_LAYERS and name not in EDGE_ALLOWED:
            found.append(f"{name}:{line} imports {module}")
        elif top(module) == "alembic" and not alembic_allowed(name):
            found.append(f"{name}:{line} imports {module} (only migrations may)")
    return found


DOMAIN_MODULES = modules(DOMAIN)
ALL_MODULES = modules(*OUTER_PACKAGES)


def test_the_walk_sees_the_code_base() -> None:
    names = {name_of(p) for p in ALL_MODULES}
    assert {"hotline/settings.py", "hotline/app.py", "webhooks/twilio.py"} <= names


@pytest.mark.parametrize("path", DOMAIN_MODULES, ids=name_of)
def test_domain_modules_import_no_edge_library(path: Path) -> None:
    violations = layering_violations(path)
    assert not violations, (
        "the domain must not depend on the edges; move this into an adapter or a composition "
        "root (or add the module to EDGE_ALLOWED if it is one):\n  " + "\n  ".join(violations)
    )


@pytest.mark.parametrize("path", ALL_MODULES, ids=name_of)
def test_only_settings_reads_the_environment(path: Path) -> None:
    name = name_of(path)
    reads = [] if name in ENVIRONMENT_ALLOWED else list(environment_reads(parse(path)))
    assert not reads, f"{name} reads the environment (only hotline/settings.py may): " + ", ".join(
        f"line {line}: {what}" for line, what in reads
    )


def test_the_allow_lists_name_real_modules() -> None:
    """A renamed module must leave no stale exemption behind."""
    planned = {"hotline/dev.py"}  # CONTRACT.md's `hotline dev`, which may not be written yet
    listed = EDGE_ALLOWED | ENVIRONMENT_ALLOWED | ALEMBIC_ALLOWED_FILES
    stale = sorted(m for m in listed - planned if not (ROOT / m).exists())
    assert not stale, f"allow-listed modules that do not exist: {stale}"


# The checkers themselves, on small samples, so a broken walk cannot pass vacuously.

SAMPLES = [
    ("import flask", ["imports flask"]),
    ("from werkzeug.exceptions import BadRequest", ["imports werkzeug.exceptions"]),
    ("def f():\n    from rq import Queue", ["imports rq"]),
    ("import redis.exceptions as e", ["imports redis.exceptions"]),
    ("from twilio.rest import Client", ["imports twilio.rest"]),
    ("from webhooks import twiml", ["imports webhooks"]),
    ("from alembic import op", ["only migrations may"]),
    ("from . import flask", []),
    ("import flask_login_helpers_not", []),
    ("from hotline.phone import redact", []),
]


@pytest.mark.parametrize(("source", "expected"), SAMPLES, ids=[s for s, _ in SAMPLES])
def test_the_import_walk_catches_edge_imports(
    tmp_path: Path, source: str, expected: list[str]
) -> None:
    package = tmp_path / "hotline"
    package.mkdir()
    module = package / "sample.py"
    module.write_text(source + "\n")
    found = [v.removeprefix("hotline/sample.py:") for v in layering_violations(module, tmp_path)]
    assert len(found) == len(expected), found
    for violation, fragment in zip(found, expected, strict=True):
        assert fragment in violation


ENVIRONMENT_SAMPLES = [
    ("import os\nx = os.environ['A']", ["os.environ"]),
    ("import os\nx = os.getenv('A')", ["os.getenv"]),
    ("def f():\n    from os import environ", ["from os import environ"]),
    ("import os\nos.path.join('a')", []),
]


@pytest.mark.parametrize(
    ("source", "expected"), ENVIRONMENT_SAMPLES, ids=[s for s, _ in ENVIRONMENT_SAMPLES]
)
def test_the_environment_walk_catches_reads(source: str, expected: list[str]) -> None:
    assert [what for _, what in environment_reads(ast.parse(source))] == expected
