"""Model presets and their schema.

A config is YAML validated by the pydantic models below; any mistake becomes one line naming the
file, the key and what was expected. `--config` takes a preset name (shipped in `presets/`) or a
path to a YAML file.

Frame-rate alignment (why the validators below insist on integers): the label frame is
`audio.label_hop_s` (100 ms). Each STFT (the spatial front-end's and the backbone's own) runs
centred with hop `hop` at its sample rate, so label frame k covers STFT frames
[k*F, (k+1)*F) with F = label_hop_s * sample_rate / hop (10 for 24 kHz / hop 240 and for
32 kHz / hop 320). The last centred frame (one past the end) is dropped, and the time pooling of
each stream multiplies to exactly F, so both streams arrive at one vector per label frame.
Audio length must therefore be a whole number of label hops.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from at2seld_edge.errors import EdgeError
from at2seld_edge.limits import (MAX_CHANNELS, MAX_CLASSES, MAX_EPOCHS, MAX_FFT, MAX_LAYERS, MAX_MELS, MAX_SAMPLE_RATE,
                                 MAX_STAGES, MAX_WINDOW_S)
from at2seld_edge.schema import Strict as _Strict
from at2seld_edge.schema import format_validation_error
from at2seld_edge.yamlfile import read_text, yaml_mapping

Width = Annotated[int, Field(gt=0, le=MAX_CHANNELS)]  # channels of one conv, width of one layer
Pool = Annotated[int, Field(gt=0, le=1_000)]  # a pooling factor


class AudioConfig(_Strict):
    sample_rate: int = Field(24000, gt=0, le=MAX_SAMPLE_RATE)
    label_hop_s: float = Field(0.1, gt=0, le=1.0)
    channel_order: Literal["ACN"] = "ACN"  # W, Y, Z, X
    normalization: Literal["SN3D"] = "SN3D"

    @property
    def label_hop_samples(self) -> int:
        return _whole(self.label_hop_s * self.sample_rate, "audio.label_hop_s * audio.sample_rate")


class FrontendConfig(_Strict):
    descriptors: str = "spectral"
    n_fft: int = Field(512, gt=0, le=MAX_FFT)
    hop: int = Field(240, gt=0, le=MAX_FFT)
    n_mels: int = Field(64, gt=0, le=MAX_MELS)
    fmin: float = Field(50.0, ge=0)
    fmax: float | None = None  # None: Nyquist
    amin: float = Field(1e-10, gt=0, le=1)
    eps: float = Field(1e-8, gt=0, le=1)

    @field_validator("descriptors")
    @classmethod
    def _known_descriptors(cls, v: str) -> str:
        from at2seld_edge.model.frontend import DESCRIPTORS

        return DESCRIPTORS.require(v)


class BackboneConfig(_Strict):
    name: str
    # per-conv output channels, and time pooling per pooling stage; None: the architecture's own channels,
    # and time pools that are factors of the frames per label frame
    channels: list[Width] | None = Field(None, max_length=64)
    time_pool: list[Pool] | None = Field(None, max_length=MAX_STAGES)
    embed_dim: Width | None = None  # width of the AudioSet fc1 (only with the AudioSet head)
    sample_rate: int = Field(32000, gt=0, le=MAX_SAMPLE_RATE)
    n_fft: int = Field(1024, gt=0, le=MAX_FFT)
    hop: int = Field(320, gt=0, le=MAX_FFT)
    n_mels: int = Field(64, gt=0, le=MAX_MELS)
    fmin: float = Field(50.0, ge=0)
    fmax: float = Field(14000.0, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)

    @field_validator("name")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        from at2seld_edge.model.backbones import BACKBONES

        return BACKBONES.require(v)


class SpatialEncoderConfig(_Strict):
    channels: list[Width] = Field([32, 64, 128], min_length=1, max_length=MAX_STAGES)
    blocks_per_stage: int = Field(1, ge=1, le=MAX_LAYERS)
    time_pool: list[Pool] = [2, 5, 1]
    freq_pool: list[Pool] = [4, 4, 2]
    dropout: float = Field(0.1, ge=0, lt=1)  # spatial (channel-wise) dropout

    @model_validator(mode="after")
    def _same_lengths(self) -> "SpatialEncoderConfig":
        if not (len(self.channels) == len(self.time_pool) == len(self.freq_pool)):
            raise ValueError("channels, time_pool and freq_pool need one entry per stage")
        return self


class CrossStitchConfig(_Strict):
    enabled: bool = True
    position: Literal["late", "early"] = "late"
    early_backbone_stage: int = Field(2, ge=1)  # mix after this many backbone stages ...
    early_spatial_stage: int = Field(2, ge=1)  # ... and this many spatial encoder stages
    init_self: float = Field(0.9, ge=0, le=1)  # initial weight of a stream on itself


class TrackTransformerConfig(_Strict):
    d_model: int = Field(128, gt=0, le=MAX_CHANNELS)
    layers: int = Field(2, ge=0, le=MAX_LAYERS)
    heads: int = Field(4, gt=0, le=256)
    ff_mult: int = Field(2, gt=0, le=16)
    dropout: float = Field(0.1, ge=0, lt=1)
    history_frames: int = Field(30, ge=1, le=3000)  # causal models: a frame attends to itself and this many before it

    @model_validator(mode="after")
    def _heads_divide(self) -> "TrackTransformerConfig":
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


class SmootherConfig(_Strict):
    hidden: int = Field(128, gt=0, le=MAX_CHANNELS)
    layers: int = Field(1, ge=1, le=MAX_LAYERS)
    # The model's causal switch (streaming): causal STFT framing, convs and resampler in every encoder,
    # track transformer attention over the last track_transformer.history_frames, unidirectional GRU.
    causal: bool = False


class HeadsConfig(_Strict):
    n_tracks: int = Field(3, ge=1, le=16)
    semantic_presence: bool = False  # auxiliary clip-level class-presence head


class LossConfig(_Strict):
    permutation: Literal["pit", "adpit"] = "pit"
    sed_weight: float = Field(1.0, ge=0, le=1e3)
    doa_weight: float = Field(0.25, ge=0, le=1e3)  # the DOA term is a mean over active tracks only
    focal_gamma: float = Field(0.0, ge=0, le=10)  # 0: plain binary cross-entropy
    doa_supervision: Literal["active", "all"] = "active"
    semantic_weight: float = Field(0.1, ge=0, le=1e3)  # with heads.semantic_presence


class AugmentConfig(_Strict):
    foa_rotations: bool = True  # the 16 FOA channel swap / sign-flip patterns
    spec_augment: bool = True
    time_masks: int = Field(2, ge=0, le=100)
    time_width: int = Field(10, ge=0, le=10_000)
    freq_masks: int = Field(2, ge=0, le=100)
    freq_width: int = Field(8, ge=0, le=1_024)


class ClassBalanceConfig(_Strict):
    """Evening out class exposure in training (training/balance.py)."""

    sampler: bool = False  # draw segments with weights by inverse class frequency (with replacement)
    subset: float | None = Field(None, gt=0, le=1)  # train on this fraction of the clips, picked greedily to even out classes


class TrainingConfig(_Strict):
    epochs: int = Field(40, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(8, ge=1, le=4_096)
    segment_seconds: float = Field(5.0, gt=0, le=MAX_WINDOW_S)
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.01, ge=0, le=10)
    restart_epochs: int = Field(10, ge=1, le=MAX_EPOCHS)  # first cosine cycle (warm restarts), in epochs
    restart_mult: int = Field(2, ge=1, le=100)
    min_lr: float = Field(1e-5, ge=0, le=10)
    patience: int = Field(12, ge=1, le=MAX_EPOCHS)  # early stopping: epochs without a better validation SELD score
    freeze_backbone_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)
    grad_clip: float = Field(5.0, gt=0, le=1e6)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's and every worker's seed
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    class_balance: ClassBalanceConfig = ClassBalanceConfig()


class ModelConfig(_Strict):
    name: str
    description: str = ""
    architecture: str = "at2seld"  # the model family (model.ARCHITECTURES): at2seld, dcase-baseline
    num_classes: int = Field(13, gt=0, le=MAX_CLASSES)
    audio: AudioConfig = AudioConfig()
    frontend: FrontendConfig = FrontendConfig()
    backbone: BackboneConfig | None = None  # at2seld's audio-tagging backbone (required there)
    spatial_encoder: SpatialEncoderConfig = SpatialEncoderConfig()
    cross_stitch: CrossStitchConfig = CrossStitchConfig()
    track_transformer: TrackTransformerConfig = TrackTransformerConfig()
    smoother: SmootherConfig = SmootherConfig()
    heads: HeadsConfig = HeadsConfig()
    training: TrainingConfig = TrainingConfig()  # how to train it; not part of the architecture

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, v: str) -> str:
        from at2seld_edge.model import ARCHITECTURES

        return ARCHITECTURES.require(v)

    @model_validator(mode="after")
    def _aligned(self) -> "ModelConfig":
        from at2seld_edge.model.backbones import BACKBONES

        a, f, b = self.audio, self.frontend, self.backbone
        self.audio.label_hop_samples  # noqa: B018 - raises when not whole
        fpl = self.frontend_frames_per_label
        if f.n_fft // 2 >= a.label_hop_samples:
            raise ValueError(f"frontend.n_fft {f.n_fft} is too long for a {a.label_hop_s}s label hop")
        fmax = f.fmax if f.fmax is not None else a.sample_rate / 2
        if not f.fmin < fmax <= a.sample_rate / 2:
            raise ValueError(f"frontend needs fmin < fmax <= Nyquist ({a.sample_rate / 2:g} Hz), got {f.fmin}..{fmax}")
        if f.n_mels < math.prod(self.spatial_encoder.freq_pool):
            raise ValueError(
                f"spatial_encoder.freq_pool {self.spatial_encoder.freq_pool} pools frontend.n_mels {f.n_mels} below one bin"
            )
        if math.prod(self.spatial_encoder.time_pool) != fpl:
            raise ValueError(
                f"spatial_encoder.time_pool {self.spatial_encoder.time_pool} multiplies to "
                f"{math.prod(self.spatial_encoder.time_pool)}, but a label frame holds {fpl} front-end STFT frames"
            )
        if self.architecture != "at2seld":  # another family checks its own parts
            from at2seld_edge.model import ARCHITECTURES

            ARCHITECTURES.get(self.architecture).check_config(self)
            return self
        if b is None:
            raise ValueError("key `backbone`: required key is missing (architecture at2seld)")
        if b.fmax > b.sample_rate / 2 or b.fmin >= b.fmax:
            raise ValueError(f"backbone needs fmin < fmax <= Nyquist ({b.sample_rate / 2:g} Hz), got {b.fmin}..{b.fmax}")
        if (a.label_hop_s * b.sample_rate) % 1 or (a.label_hop_samples * b.sample_rate) % a.sample_rate:
            raise ValueError(f"a label hop is not a whole number of samples at backbone.sample_rate {b.sample_rate}")
        arch = BACKBONES.get(b.name)
        arch.check_config(self)  # channel counts, pooling stages, time pools
        cs = self.cross_stitch
        if cs.enabled and cs.position == "early":
            if cs.early_spatial_stage > len(self.spatial_encoder.channels):
                raise ValueError(
                    f"cross_stitch.early_spatial_stage {cs.early_spatial_stage} > "
                    f"{len(self.spatial_encoder.channels)} spatial encoder stages"
                )
            n_stages = arch.num_stages(self)
            if cs.early_backbone_stage > n_stages:
                raise ValueError(f"cross_stitch.early_backbone_stage {cs.early_backbone_stage} > {n_stages} backbone stages")
            ts = arch.time_stride_after(self, cs.early_backbone_stage) * self.backbone_frames_per_label // fpl
            tp = math.prod(self.spatial_encoder.time_pool[: cs.early_spatial_stage])
            if ts != tp:
                raise ValueError(
                    "early cross-stitch needs both streams at one frame rate: after backbone stage "
                    f"{cs.early_backbone_stage} the time stride is {ts} front-end frames, after spatial "
                    f"stage {cs.early_spatial_stage} it is {tp}"
                )
        return self

    @property
    def causal(self) -> bool:
        """Every part looks only back in time, so the model streams (see model/stream.py)."""
        return self.smoother.causal

    @property
    def frontend_frames_per_label(self) -> int:
        return _whole(self.audio.label_hop_s * self.audio.sample_rate / self.frontend.hop,
                      "audio.label_hop_s * audio.sample_rate / frontend.hop")

    @property
    def backbone_frames_per_label(self) -> int:
        b = self.backbone
        return _whole(self.audio.label_hop_s * b.sample_rate / b.hop, "audio.label_hop_s * backbone.sample_rate / backbone.hop")

    def fingerprint(self) -> str:
        """Stable hash of the architecture, recorded in every artifact's manifest."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"training", "description"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _whole(x: float, what: str) -> int:
    n = round(x)
    if n <= 0 or abs(x - n) > 1e-9:
        raise ValueError(f"{what} = {x:g} must be a positive whole number")
    return n


# ----------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    root = resources.files("at2seld_edge") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


DEFAULT_PRESET = "at2seld-nano"


def preset_description(name: str) -> str:
    """A shipped preset's one-line description, read from its YAML without validating it: the
    validators consult the model registries, which import torch, and listing names needs none
    (tests validate every preset)."""
    if name not in preset_names():
        raise EdgeError(f"unknown preset {name!r} (presets: {', '.join(preset_names())})")
    text = (resources.files("at2seld_edge") / "presets" / f"{name}.yaml").read_text(encoding="utf-8")
    return str(yaml_mapping(text, f"preset {name}", "config").get("description", ""))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A preset name (see `preset_names()`) or a YAML file path."""
    text, source = _read_config_source(str(name_or_path))
    return config_from_dict(yaml_mapping(text, source, "config"), source)


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> ModelConfig:
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{source}: {format_validation_error(e, ModelConfig)}") from None
    except EdgeError as e:  # a registry lookup inside a validator
        raise EdgeError(f"{source}: {e}") from None


def _read_config_source(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise EdgeError(f"{path}: config file not found")  # a folder or FIFO: read_text says which
        return read_text(path, "config"), str(path)
    if name_or_path in preset_names():
        res = resources.files("at2seld_edge") / "presets" / f"{name_or_path}.yaml"
        return res.read_text(encoding="utf-8"), f"preset {name_or_path}"
    raise EdgeError(f"unknown preset {name_or_path!r} and no such file (presets: {', '.join(preset_names())})")
