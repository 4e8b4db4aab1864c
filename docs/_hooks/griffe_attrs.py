"""Griffe extension for the docs build (loaded by mkdocstrings, see mkdocs.yml).

attrs classes (``@attrs.frozen``, ``@attrs.define``...) get no ``__init__`` in the source, so
their signature would be missing from the reference. This builds it from the annotated fields,
the way griffe's built-in extension does for dataclasses: keyword-only when the decorator says
``kw_only=True``, defaults from ``default=`` / ``factory=``, ``init=False`` fields left out,
``alias=`` (or attrs' stripping of a leading ``_``) applied. The source is not changed.
"""

from __future__ import annotations

import ast
from typing import Any

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


class AttrsSignatures(Extension):
    """Adds the ``__init__`` signature attrs generates to each attrs class."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        _walk(pkg, set())
