"""MkDocs hook: fail the strict build when a public name has no block in docs/reference.md.

Every name in ``ssemble_async.__all__`` (and in ``ssemble_async.testing.__all__``, once that
package exists) needs its own ``::: <package>.<name>`` line in the reference page. A missing
name, or a block for a name that is no longer public, is logged as a warning, which
``mkdocs build --strict`` turns into an error.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.check_reference")

_BLOCK = re.compile(r"^:::\s+(ssemble_async(?:\.testing)?)\.(\w+)\s*$", re.MULTILINE)


def _public_names(module_name: str) -> list[str] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None  # the package (e.g. ssemble_async.testing) does not exist yet
        raise
    return list(getattr(module, "__all__", []))


def on_pre_build(config: Any, **_: Any) -> None:
    page = Path(config["docs_dir"]) / "reference.md"
    text = page.read_text(encoding="utf-8")
    documented: dict[str, set[str]] = {}
    for package, name in _BLOCK.findall(text):
        if (package, name) == ("ssemble_async", "testing"):
            continue  # the block of the subpackage's own docstring
        documented.setdefault(package, set()).add(name)
    for package in ("ssemble_async", "ssemble_async.testing"):
        public = _public_names(package)
        have = documented.get(package, set())
        if public is None:
            if have:
                log.warning("reference.md documents %s, which cannot be imported", package)
            continue
        for name in sorted(set(public) - have):
            log.warning("reference.md: no '::: %s.%s' block for a name in __all__", package, name)
        for name in sorted(have - set(public)):
            log.warning("reference.md: '::: %s.%s' is not in %s.__all__", package, name, package)
