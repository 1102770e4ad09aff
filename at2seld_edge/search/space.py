"""The search space, declared in one place: what each stage may change, as config keys.

A parameter is named by the config key it sets (`track_transformer.layers`, `training.weight_decay`)
or by one of the derived knobs below, and takes `choices` or a `low`..`high` range. `SearchSpace`
is validated twice: as a schema (a YAML given with `--space` is read through it), and against the
stage's base config, where every combination of choices (ranges at both ends) must build a valid
ModelConfig, so a bad space fails before any trial runs, naming the parameter values.

Derived knobs: `spatial_encoder.type` (one of `encoder_types`, each a set of spatial_encoder
keys: the encoder's block/pooling geometry), `spatial_encoder.width` (multiplies the encoder's
channels), `cross_stitch.position` (`late`, `early`, or `off`: plain concatenation fusion) and
`training.augment.strength` (scales SpecAugment's mask widths; 0 turns it off).
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Callable

from pydantic import Field, field_validator, model_validator

from at2seld_edge.config import ModelConfig, config_from_dict
from at2seld_edge.errors import EdgeError
from at2seld_edge.registry import Registry
from at2seld_edge.schema import Strict as _Strict
from at2seld_edge.yamlfile import read_text, yaml_mapping

Value = int | float | str | bool
MAX_CHOICES = 1_000  # values of one parameter
MAX_COMBINATIONS = 100_000  # a stage's grid: every combination is checked before a trial runs


class Param(_Strict):
    """`choices`, or a `low`..`high` range (`log` scale; `integer` for whole numbers)."""

    choices: list[Value] | None = Field(None, max_length=MAX_CHOICES)
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "Param":
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either `choices` or both `low` and `high`")
        if self.choices is not None and (not self.choices or len(set(map(repr, self.choices))) != len(self.choices)):
            raise ValueError("`choices` must be a non-empty list without repeats")
        if self.choices is None and not (self.low < self.high and (not self.log or self.low > 0)):
            raise ValueError(f"need low < high (and low > 0 on a log scale), got {self.low}..{self.high}")
        return self

    def corners(self) -> list[Value]:
        """The values every combination is validated with."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.integer else [self.low, self.high]


class SearchSpace(_Strict):
    """The three stages of the method. Defaults: a nano-sized space (minutes per trial on a CPU)."""

    encoder_types: dict[str, dict[str, Any]] = {
        "residual-fine-freq": {"freq_pool": [2, 2, 2]},  # 8 bins per frame: direction cues per band
        "residual-coarse-freq": {"freq_pool": [4, 4, 2]},  # 2 bins: fewer features into the fusion
    }
    stage1: dict[str, Param] = Field(default_factory=lambda: {
        "frontend.descriptors": Param(choices=["logmel_iv", "spectral"]),
        "spatial_encoder.type": Param(choices=["residual-fine-freq", "residual-coarse-freq"]),
    })
    stage2: dict[str, Param] = Field(default_factory=lambda: {
        "spatial_encoder.blocks_per_stage": Param(choices=[1, 2]),
        "spatial_encoder.width": Param(choices=[0.75, 1.0, 1.5]),
        "track_transformer.layers": Param(choices=[0, 1, 2]),
        "track_transformer.d_model": Param(choices=[64, 96]),
        "track_transformer.heads": Param(choices=[2, 4]),
        "smoother.hidden": Param(choices=[48, 64, 96]),
        "smoother.layers": Param(choices=[1, 2]),
    })
    stage3: dict[str, Param] = Field(default_factory=lambda: {
        "cross_stitch.position": Param(choices=["late", "early", "off"]),
        "spatial_encoder.dropout": Param(low=0.0, high=0.3),
        "track_transformer.dropout": Param(low=0.0, high=0.3),
        "training.weight_decay": Param(low=1e-4, high=0.1, log=True),
        "training.augment.strength": Param(low=0.0, high=2.0),
    })

    @field_validator("stage1", "stage2", "stage3")
    @classmethod
    def _not_empty(cls, v: dict[str, Param]) -> dict[str, Param]:
        if not v:
            raise ValueError("a stage needs at least one parameter")
        count = math.prod(len(p.corners()) for p in v.values())
        if count > MAX_COMBINATIONS:
            widest = max(v, key=lambda k: len(v[k].corners()))
            raise ValueError(f"{count:,} combinations of values, over {MAX_COMBINATIONS:,} (each is checked before "
                             f"any trial); {widest} alone has {len(v[widest].corners()):,}: give fewer choices or "
                             "a low..high range")
        return v

    @field_validator("stage1")
    @classmethod
    def _grid(cls, v: dict[str, Param]) -> dict[str, Param]:
        ranged = [k for k, p in v.items() if p.choices is None]
        if ranged:
            raise ValueError(f"stage 1 is a grid: {', '.join(ranged)} need `choices`")
        return v

    def stage(self, k: int) -> dict[str, Param]:
        return {1: self.stage1, 2: self.stage2, 3: self.stage3}[k]

    def grid(self, k: int) -> dict[str, list[Value]]:
        return {name: list(p.choices) for name, p in self.stage(k).items() if p.choices is not None}

    def check(self, k: int, base: ModelConfig) -> None:
        """Every combination of the stage's choices (ranges at both ends) builds a valid config."""
        params = self.stage(k)
        names = list(params)
        for values in itertools.product(*(params[n].corners() for n in names)):
            chosen = dict(zip(names, values))
            try:
                apply_params(self, base, chosen)
            except EdgeError as e:
                raise EdgeError(f"search space stage {k}: {_show(chosen)} gives no valid model: {e}") from None


# ----------------------------------------------------------------------------- applying parameters

Knob = Callable[[dict, Value, SearchSpace], None]
KNOBS: Registry[Knob] = Registry("search knob")


@KNOBS.register("spatial_encoder.type")
def _encoder_type(cfg: dict, value: Value, space: SearchSpace) -> None:
    if value not in space.encoder_types:
        raise EdgeError(f"spatial_encoder.type {value!r} is not in encoder_types ({', '.join(space.encoder_types)})")
    cfg.setdefault("spatial_encoder", {}).update(copy.deepcopy(space.encoder_types[str(value)]))


def _factor(key: str, value: Value, high: float, zero: bool) -> float:
    """A derived knob's multiplier, within its range: 1e308 would overflow the channel count, and a
    negative width silently became the narrowest encoder."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and (0 <= value if zero else 0 < value) and value <= high):
        raise EdgeError(f"{key} {value!r}: a factor in {'[0' if zero else '(0'}, {high:g}]")
    return float(value)


@KNOBS.register("spatial_encoder.width")
def _encoder_width(cfg: dict, value: Value, space: SearchSpace) -> None:
    enc = cfg.setdefault("spatial_encoder", {})
    width = _factor("spatial_encoder.width", value, 16, zero=False)
    enc["channels"] = [max(4, 4 * round(c * width / 4)) for c in enc.get("channels", [32, 64, 128])]


@KNOBS.register("cross_stitch.position")
def _cross_stitch(cfg: dict, value: Value, space: SearchSpace) -> None:
    cs = cfg.setdefault("cross_stitch", {})
    cs["enabled"] = value != "off"
    if value != "off":
        cs["position"] = value


@KNOBS.register("training.augment.strength")
def _augment_strength(cfg: dict, value: Value, space: SearchSpace) -> None:
    aug = cfg.setdefault("training", {}).setdefault("augment", {})
    strength = _factor("training.augment.strength", value, 100, zero=True)
    for key, default in (("time_width", 10), ("freq_width", 8)):
        aug[key] = round(aug.get(key, default) * strength)
    aug["spec_augment"] = aug["time_width"] > 0 or aug["freq_width"] > 0


def set_key(cfg: dict, key: str, value: Value) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise EdgeError(f"search parameter {key!r}: {p!r} is not a config section")
    node[leaf] = value


def apply_params(space: SearchSpace, base: ModelConfig, params: dict[str, Value]) -> ModelConfig:
    """`base` with the parameters set (derived knobs first, in declaration order); validated."""
    cfg = base.model_dump(mode="json")
    for key, value in params.items():
        if key in KNOBS:
            KNOBS.get(key)(cfg, value, space)
        else:
            set_key(cfg, key, value)
    return config_from_dict(cfg, f"search config ({_show(params)})")


def _show(params: dict[str, Value]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def load_space(path: str | None) -> SearchSpace:
    """The default space, or a YAML file read through the same schema."""
    if path is None:
        return SearchSpace()
    from pydantic import ValidationError

    from at2seld_edge.schema import format_validation_error

    data = yaml_mapping(read_text(path, "search space"), str(path), "search space")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{path}: {format_validation_error(e, SearchSpace)}") from None
