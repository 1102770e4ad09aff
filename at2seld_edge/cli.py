"""The `edge` command. It alone sequences the stages; a user mistake prints one message and exits
with the code from `errors.EXIT_CODES`, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from at2seld_edge.config import DEFAULT_PRESET, load_config, preset_names
from at2seld_edge.errors import EdgeError, ErrorKind

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Put an AT2SELD SELD model on a Jetson-class GPU, inside a budget, with proof.")
model_app = typer.Typer(no_args_is_help=True, help="Inspect model presets.")
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True)

CONFIG_HELP = f"preset name ({', '.join(preset_names())}) or path to a YAML config"


def _load_model(config: Optional[str], checkpoint: Optional[Path], backbone_weights: Optional[Path]):
    """The model named by --config/--checkpoint, with official backbone weights if given."""
    from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from at2seld_edge.model import build_model
    from at2seld_edge.model.backbones.official_weights import load_official_checkpoint

    manifest: dict = {}
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if config is not None:
            wanted = load_config(config)
            if wanted.fingerprint() != ckpt.config.fingerprint():
                raise EdgeError(
                    f"{checkpoint}: made with config {ckpt.config.name!r}, which differs from --config {config}; "
                    "leave out --config to use the checkpoint's own"
                )
        model = model_from_checkpoint(ckpt)
        manifest.update(source_checkpoint=str(checkpoint), source_checkpoint_sha256=ckpt.sha256(),
                        classes=ckpt.classes, thresholds=ckpt.thresholds)
    else:
        model = build_model(load_config(config or DEFAULT_PRESET))
    if backbone_weights is not None:
        report = load_official_checkpoint(model.backbone, backbone_weights)
        err.print(report.summary())
        manifest["backbone_weights"] = str(backbone_weights)
    return model, manifest


@model_app.command("summary")
def model_summary(
    config: str = typer.Option(DEFAULT_PRESET, "--config", "-c", help=CONFIG_HELP),
    seconds: float = typer.Option(1.0, help="audio length the MACs are counted on (reported per second)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Parameters and MACs per second of audio, per module and in total."""
    from at2seld_edge.model import build_model
    from at2seld_edge.summary import summarize

    cfg = load_config(config)
    s = summarize(build_model(cfg), seconds)
    if as_json:
        out.print_json(json.dumps(s.to_dict()))
        return
    table = Table(title=f"{cfg.name}: cost per second of audio",
                  caption="MACs = FLOPs / 2 from torch's FLOP counter; frozen = DFT kernels and mel filters")
    table.add_column("module")
    table.add_column("params", justify="right")
    table.add_column("frozen", justify="right")
    table.add_column("MMACs/s", justify="right")
    table.add_column("share", justify="right")
    for m in s.modules:
        share = m.macs_per_second / s.total_macs_per_second if s.total_macs_per_second else 0.0
        table.add_row(m.module, f"{m.params:,}", f"{m.params - m.trainable_params:,}",
                      f"{m.macs_per_second / 1e6:,.1f}", f"{share:.1%}")
    table.add_section()
    frozen = sum(m.params - m.trainable_params for m in s.modules)
    table.add_row("total", f"{s.total_params:,}", f"{frozen:,}", f"{s.total_macs_per_second / 1e6:,.1f}", "100.0%")
    out.print(table)


@model_app.command("presets")
def model_presets() -> None:
    """List the shipped model presets."""
    for name in preset_names():
        out.print(f"{name}: {load_config(name).description}")


@app.command("export")
def export(
    out_path: Path = typer.Option(..., "--out", "-o", help="ONNX file to write"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP + f" (default {DEFAULT_PRESET})"),
    checkpoint: Optional[Path] = typer.Option(None, help="at2seld-edge checkpoint (its config is used)"),
    backbone_weights: Optional[Path] = typer.Option(None, help="official PANNs / E-PANNs .pth for the backbone"),
    opset: int = typer.Option(17, help="ONNX opset"),
    seconds: float = typer.Option(1.0, help="input length (a whole number of label hops)"),
    dynamic_time: bool = typer.Option(False, "--dynamic-time", help="dynamic batch and time axes"),
    tolerance: float = typer.Option(1e-4, help="max abs difference allowed between ONNX Runtime and PyTorch"),
) -> None:
    """Export the whole model, front-end included, to ONNX; check it and compare it with PyTorch."""
    from at2seld_edge.onnx_export import export_onnx

    if opset < 14:
        raise EdgeError(f"--opset {opset}: the model needs opset 14 or newer", ErrorKind.USAGE)
    model, manifest = _load_model(config, checkpoint, backbone_weights)
    with err.status(f"exporting {model.config.name} to {out_path} ..."):
        result = export_onnx(model, out_path, seconds=seconds, dynamic_time=dynamic_time, opset=opset,
                             tolerance=tolerance, manifest_extra=manifest)
    lengths = ", ".join(f"{n} samples" for n in result.checked_lengths)
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in result.max_abs_diff.items())
    out.print(f"wrote {result.path} (onnx.checker ok; opset {opset}; {'dynamic' if dynamic_time else 'static'} time)")
    out.print(f"ONNX Runtime vs PyTorch max abs diff on {lengths}: {diffs} (tolerance {tolerance:g})")


def main() -> None:
    try:
        app(standalone_mode=True)
    except EdgeError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
