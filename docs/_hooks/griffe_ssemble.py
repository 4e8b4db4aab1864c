"""Griffe extension for the docs build (loaded by mkdocstrings, see mkdocs.yml).

Two things the static analysis cannot do alone:

* attrs classes (``@attrs.frozen``, ``@attrs.define``...) get no ``__init__`` in the source,
  so their signature would be missing. This builds it from the annotated fields, the way
  griffe's built-in extension does for dataclasses: keyword-only when the decorator says
  ``kw_only=True``, defaults from ``default=`` / ``factory=``, ``init=False`` fields left out,
  ``alias=`` (or attrs' stripping of a leading ``_``) applied.
* The docstrings use a few Sphinx idioms (``:class:`X```, a paragraph ending in ``::``) that
  Markdown shows verbatim. They are rewritten to a code span and a plain ``:``; and a
  module-level name documented by a ``#:`` comment above it gets that comment as its
  docstring. The source is not changed.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe
from griffe import (
    Attribute,
    Class,
    Expr,
    ExprCall,
    Extension,
    Function,
    Module,
    Parameter,
    ParameterKind,
    Parameters,
)

_ATTRS_DECORATORS = frozenset(
    f"{module}.{name}"
    for module in ("attrs", "attr")
    for name in ("define", "frozen", "mutable", "s", "attrs", "dataclass")
)
_ATTRS_FIELDS = frozenset({"attrs.field", "attr.field", "attr.ib", "attr.attrib"})

_POSITIONAL_OR_KEYWORD = ParameterKind("positional or keyword")
_KEYWORD_ONLY = ParameterKind("keyword-only")

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_LITERAL_MARKER = re.compile(r"(\S)::[ \t]*\n(?=[ \t]*\n)")


def _call_args(expr: Any) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if isinstance(expr, ExprCall):
        for argument in expr.arguments:
            name = getattr(argument, "name", None)
            if name is not None:
                args[name] = getattr(argument, "value", None)
    return args


def _attrs_decorator(cls: Class) -> Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, Expr):
            path = value.canonical_path
            if path in _ATTRS_DECORATORS:
                return value
    return None


def _field_args(attribute: Attribute) -> dict[str, Any] | None:
    value = attribute.value
    if isinstance(value, ExprCall) and value.canonical_path in _ATTRS_FIELDS:
        return _call_args(value)
    return None


def _attrs_parameters(cls: Class, kw_only: bool) -> list[Parameter]:
    parameters = []
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute:
            continue
        attribute: Attribute = member  # type: ignore[assignment]
        if attribute.annotation is None or "property" in attribute.labels:
            continue
        if "ClassVar" in str(attribute.annotation):
            continue
        field = _field_args(attribute)
        if field is not None and str(field.get("init")) == "False":
            continue
        name = attribute.name
        if field is not None and "alias" in field:
            name = ast.literal_eval(str(field["alias"]))
        elif name.startswith("_"):
            name = name.lstrip("_")
        if field is None:
            default = attribute.value
        elif "default" in field:
            default = field["default"]
        elif "factory" in field:
            default = ExprCall(function=field["factory"], arguments=[])
        else:
            default = None
        field_kw_only = field is not None and str(field.get("kw_only")) == "True"
        kind = _KEYWORD_ONLY if kw_only or field_kw_only else _POSITIONAL_OR_KEYWORD
        parameters.append(
            Parameter(name, annotation=attribute.annotation, kind=kind, default=default)
        )
    # Python requires parameters without a default first among the positional ones.
    positional = [p for p in parameters if p.kind is _POSITIONAL_OR_KEYWORD]
    keyword = [p for p in parameters if p.kind is _KEYWORD_ONLY]
    return positional + keyword


def _add_attrs_init(cls: Class) -> None:
    decorator = _attrs_decorator(cls)
    if decorator is None or "__init__" in cls.members:
        return
    options = _call_args(decorator)
    if str(options.get("init")) == "False":
        return
    kw_only = str(options.get("kw_only")) == "True"
    cls.set_member(
        "__init__",
        Function(
            "__init__",
            lineno=0,
            endlineno=0,
            parent=cls,
            parameters=Parameters(
                Parameter("self", kind=_POSITIONAL_OR_KEYWORD),
                *_attrs_parameters(cls, kw_only),
            ),
            returns="None",
        ),
    )


def _walk(obj: Module | Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if isinstance(obj, Class):
        _add_attrs_init(obj)
    for member in list(obj.members.values()):
        if not member.is_alias and (member.is_module or member.is_class):
            _walk(member, seen)  # type: ignore[arg-type]


def _rewrite(text: str) -> str:
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text
    )
    return _LITERAL_MARKER.sub(r"\1:\n", text)


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute, without the markers."""
    try:
        lines = obj.module.lines
    except Exception:  # no source available
        return None
    index = (obj.lineno or 0) - 2
    found: list[str] = []
    while 0 <= index < len(lines) and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return "\n".join(found) or None


class SsembleDocs(Extension):
    """Adds attrs ``__init__`` signatures, ``#:`` docs, and renders Sphinx roles as code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute:
            text = _comment_docstring(obj)
            if text is not None:
                obj.docstring = griffe.Docstring(text, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = _rewrite(obj.docstring.value)

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        _walk(pkg, set())
