"""What every schema the toolkit reads shares, and how its mistakes read.

`Strict` refuses unknown keys, freezes values and takes finite numbers only (`.inf` or NaN in a
config, a budget or a record is refused where it is read, not turned into an overflow later);
`format_validation_error` renders pydantic's errors as one line naming each key.
"""

from __future__ import annotations

from typing import Any, get_args

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
    model: Any = root
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        ann = next((t for t in get_args(ann) if isinstance(t, type) and issubclass(t, BaseModel)), ann)  # X | None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)
