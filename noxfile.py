"""The developer's front door: `python3 -m nox` runs tests, lint, typecheck and docs."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "coverage[toml]>=7.10"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage; fail below 90% branch coverage."""
    session.install("-e", ".", *TEST_DEPS)
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", "--fail-under=90")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and on a typed use of the public API."""
    session.install("-e", ".", "mypy==2.4.1", "types-aiofiles", *TEST_DEPS)
    session.run("mypy", "--strict", "ssemble_async", "tests/typing")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    session.install("-e", ".", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.25")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; each prints a table of figures and ratios to a baseline.

    Arguments after ``--`` go to benchmarks/download.py (e.g. ``-- --quick --repeat 3``).
    """
    session.install("-e", ".")
    session.run("python", "benchmarks/parsing.py")
    session.run("python", "benchmarks/download.py", *session.posargs)
