"""The docstrings are Markdown for mkdocstrings: no Sphinx roles, and every cross-reference
(``[text][ssemble_async.Name]``) names a public object that exists.

``mkdocs build --strict`` (``nox -s docs``) fails on a cross-reference it cannot resolve in
the docstrings it renders; this check also covers the docstrings it does not render (private
modules, private objects), runs with the tests, and catches the Sphinx idioms the build shows
verbatim.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "ssemble_async"
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`[^`]+`")
LITERAL_MARKER = re.compile(r"\S::[ \t]*$", re.MULTILINE)
CROSS_REFERENCE = re.compile(r"\]\[([\w.]+)\]")


def docstrings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each docstring of a module: of the module, classes, functions, and the
    string right after an assignment (an attribute docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for index, statement in enumerate(body):
            if not (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                continue
            first = index == 0 and isinstance(
                node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            )
            after_assignment = index > 0 and isinstance(
                body[index - 1], (ast.Assign, ast.AnnAssign)
            )
            if first or after_assignment:
                yield statement.lineno, statement.value.value


def resolves(target: str) -> bool:
    """True when ``target`` is a public name of the package that can be imported: a module
    of it, or an attribute (class, function, member) reached from one."""
    parts = target.split(".")
    if parts[0] != "ssemble_async" or any(part.startswith("_") for part in parts):
        return False
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_docstrings_are_markdown_with_resolvable_references(path: Path) -> None:
    problems = []
    for line, text in docstrings(path):
        problems += [f"line {line}: Sphinx role {role}" for role in ROLE.findall(text)]
        if LITERAL_MARKER.search(text):
            problems.append(f"line {line}: a paragraph ends in '::' (use a fenced block)")
        problems += [
            f"line {line}: [...][{target}] names no public object"
            for target in CROSS_REFERENCE.findall(text)
            if not resolves(target)
        ]
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""See :class:`Client` and [`Nope`][ssemble_async.Nope], or [`x`][ssemble_async._x]."""\n'
        "X = 1\n"
        '"""Example::\n\n    X\n"""\n',
        encoding="utf-8",
    )
    found = [text for _, text in docstrings(bad)]
    assert len(found) == 2
    assert ROLE.findall(found[0]) == [":class:`Client`"]
    assert [t for t in CROSS_REFERENCE.findall(found[0]) if not resolves(t)] == [
        "ssemble_async.Nope",
        "ssemble_async._x",
    ]
    assert LITERAL_MARKER.search(found[1])
    assert resolves("ssemble_async.Client.download_many")
    assert resolves("ssemble_async.testing.FakeSsembleAPI")
    assert resolves("ssemble_async.webhooks.webhook_app")
