"""What every schema the toolkit reads shares, and how its mistakes read.

`Strict` refuses unknown keys, freezes values and takes finite numbers only (`.inf` or NaN in a
config, a budget or a record is refused where it is read, not turned into an overflow later);
`format_validation_error` renders pydantic's errors as one line naming each key.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: `key.path: what was expected (got ...)`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, e["loc"][:-1])
            parts.append(f"key `{loc}`: unknown key (expected one of: {', '.join(allowed)})")
        elif e["type"] == "missing":
            parts.append(f"key `{loc}`: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, (dict, BaseModel)) or got is None else f" (got {got!r})"
            parts.append(f"key `{loc}`: {msg}{shown}" if loc else msg)
    return "; ".join(parts)


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The fields of the model at `loc`, through lists, dicts and `X | None` (`inputs.0`: a
    TensorSpec's), or [] where no model is."""
    node: Any = root
    for part in loc:
        model = _model_of(node)
        if model is not None:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            node = getattr(field, "annotation", None)
        else:  # an element of a list (an int part) or a dict (a key)
            args = [a for a in get_args(_model_of(node, container=True)) if a is not type(None)]
            node = args[-1] if args else None
    model = _model_of(node)
    return list(model.model_fields) if model is not None else []


def _model_of(t: Any, container: bool = False) -> Any:
    """`t`, or the member of the union `t` that is a model (container: a list or dict type)."""
    for member in (t, *get_args(t)) if get_origin(t) in (Union, UnionType) else (t,):
        if container and get_origin(member) in (list, tuple, dict):
            return member
        if not container and isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None
