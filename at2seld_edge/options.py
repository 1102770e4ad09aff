"""Option types every stage shares, and the base of each stage's strict options model.

A stage's options are a frozen pydantic model that the library validates and resolves into a
plan; the CLI only fills it from flags. A field is named like its flag (`calib_clips` is
`--calib-clips`), so a validation error names the flag the user typed.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from at2seld_edge.errors import EdgeError, ErrorKind

Precision = Literal["fp32", "fp16", "int8", "best"]  # best: INT8 where quantized, FP16 elsewhere
ProfilePrecision = Literal["fp32", "fp16", "int8"]
CalibMethod = Literal["minmax", "entropy", "percentile"]
ExecutionDevice = Literal["auto", "cpu", "cuda"]
CALIBRATION_METHODS: tuple[str, ...] = CalibMethod.__args__  # type: ignore[attr-defined]

O = TypeVar("O", bound="StageOptions")


class StageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)

    @classmethod
    def from_flags(cls: type[O], **values: Any) -> O:
        """Validate what the command line gave; a mistake is one line naming the flag (exit 2)."""
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise EdgeError(flag_errors(e), ErrorKind.USAGE) from None


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def flag_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = err["loc"]
        name = flag(str(loc[0])) if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = "expected " + msg.removeprefix("Input should be ")
        got = err.get("input")
        shown = f" {got!r}" if loc and not isinstance(got, (dict, BaseModel)) else ""
        parts.append(f"{name}{shown}: {msg}" if name else msg)
    return "; ".join(parts)


class Int8Limits(StageOptions):
    """The INT8 limits as `edge compress` and `edge build` both take them (`--int8-*` flags)."""

    int8_min_agreement: float = Field(0.95, ge=0.5, le=1.0)
    int8_max_doa_mean: float = Field(5.0, gt=0, le=30.0)
    int8_max_doa_p95: float = Field(15.0, gt=0, le=60.0)

    @property
    def int8_tolerance(self) -> dict:
        return {"min_decision_agreement": self.int8_min_agreement, "max_mean_doa_error_deg": self.int8_max_doa_mean,
                "max_p95_doa_error_deg": self.int8_max_doa_p95}
