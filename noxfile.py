"""The developer's front door: `python3 -m nox` runs tests, lint, typecheck and docs."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "coverage[toml]>=7.10"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage; fail below 90% branch coverage.

    The shared-quota and work-queue tests need Debian's redis-server (.ci/run installs it),
    the S3 tests an in-process moto server; without them they skip, unless
    SSEMBLE_REQUIRE_REDIS=1 / SSEMBLE_REQUIRE_S3=1 say they must run.
    """
    session.install("-e", ".[distributed,s3]", *TEST_DEPS, "moto[server]>=5.1")
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
    session.install(
        "-e",
        ".[distributed,s3]",
        "mypy==2.4.1",
        "types-aiofiles",
        "types-aiobotocore[s3]",
        *TEST_DEPS,
    )
    session.run("mypy", "--strict", "ssemble_async", "tests/typing")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors.

    ruff is there for mkdocstrings, which formats long signatures with it.
    """
    session.install("-e", ".", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.25", "ruff==0.17.6")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; each prints a table of figures and ratios to a baseline.

    Arguments after ``--`` go to benchmarks/download.py (e.g. ``-- --quick --repeat 3``).
    """
    session.install("-e", ".[distributed,s3]", "moto[server]>=5.1")
    session.run("python", "benchmarks/startup.py")
    session.run("python", "benchmarks/parsing.py")
    session.run("python", "benchmarks/quota.py")
    session.run("python", "benchmarks/download.py", *session.posargs)
    session.run("python", "benchmarks/scale.py")


@nox.session
def soak(session: nox.Session) -> None:
    """The long interruption soak: 280 trials, each interrupting a multi-request download.

    Every kind takes turns (task cancel, SIGINT and SIGKILL of the command, both also on a
    slow disk, a full disk, a clip host that fails until the run gives up), each followed by
    a second run that must leave byte-identical files without fetching a completed byte
    again; then two writers into one folder, 10 rounds of each kind. Prints the tallies.
    ``SSEMBLE_SOAK_SEED=N`` replays a seed (``SSEMBLE_SOAK_TRIAL=N``: one trial of it);
    arguments after ``--`` go to pytest.
    """
    session.install("-e", ".", *TEST_DEPS)
    env = {
        "SSEMBLE_SOAK_TRIALS": os.environ.get("SSEMBLE_SOAK_TRIALS", "280"),
        "SSEMBLE_SOAK_MIN_INTERRUPTIONS": os.environ.get("SSEMBLE_SOAK_MIN_INTERRUPTIONS", "200"),
        "SSEMBLE_TWO_WRITERS_ROUNDS": os.environ.get("SSEMBLE_TWO_WRITERS_ROUNDS", "10"),
    }
    session.run(
        "pytest",
        "-s",
        "tests/reliability/test_soak.py",
        "tests/reliability/test_two_writers.py",
        *session.posargs,
        env=env,
    )
