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
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthesize the default one, check a spec.")
app.add_typer(data_app, name="data")

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


@data_app.command("synth")
def data_synth(
    out_dir: Path = typer.Option(..., "--out", help="dataset folder to write (or complete)"),
    clips: int = typer.Option(200, help="number of clips (70% train, 15% validation, 15% test)"),
    seed: int = typer.Option(0, help="random seed; the same seed gives the same files"),
    classes: Optional[str] = typer.Option(None, help="comma-separated synthetic classes (default: the 8 standard ones)"),
    max_polyphony: int = typer.Option(3, help="most events sounding at once"),
    seconds: float = typer.Option(10.0, help="clip length"),
) -> None:
    """Write a synthetic FOA dataset in the DCASE2023 layout, with its dataset spec."""
    from rich.progress import Progress

    from at2seld_edge.data.synth import DEFAULT_CLASSES, synthesize

    names = [c.strip() for c in classes.split(",")] if classes else None
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("synthesizing clips", total=clips)
        spec = synthesize(out_dir, clips, seed, names, max_polyphony, seconds,
                          progress=lambda i: progress.update(task, completed=i))
    out.print(f"wrote {clips} clips and {spec}; classes: {', '.join(names or DEFAULT_CLASSES)}", highlight=False)


@data_app.command("check")
def data_check(
    data: Path = typer.Option(..., "--data", help="dataset spec YAML"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="list bad clips instead of stopping at the first"),
) -> None:
    """Read every split of a dataset spec and report clip counts, events and problems."""
    from at2seld_edge.data.spec import load_dataset

    ds = load_dataset(data)
    for split in ds.spec.splits:
        skipped: list[str] = []
        clips = ds.clips(split, skip_bad, skipped)
        events = sum(len(c.events) for c in clips)
        out.print(f"{split}: {len(clips)} clips, {sum(c.samples for c in clips) / ds.spec.sample_rate / 60:.1f} min, "
                  f"{events} event-frames")
        for s in skipped:
            out.print(f"  skipped: {s}", highlight=False)


def _progress_reporter(progress):
    from at2seld_edge.training.trainer import Reporter

    state = {"task": None}

    def start(epoch, total):
        if state["task"] is not None:
            progress.remove_task(state["task"])
        state["task"] = progress.add_task(f"epoch {epoch}", total=total, loss=float("nan"))

    def done(row, best):
        progress.console.print(
            f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  val ER {row['val_ER']:.3f}  F {row['val_F']:.3f}  "
            f"LE {row['val_LE']:5.1f}  LR {row['val_LR']:.3f}  SELD {row['val_SELD']:.3f}  {row['seconds']:.0f}s"
            + ("  *best" if best else ""), highlight=False)

    return Reporter(start_batches=start, batch_done=lambda loss: progress.update(state["task"], advance=1, loss=loss),
                    epoch_done=done, message=lambda text: progress.console.print(text, highlight=False))


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="dataset spec YAML"),
    out_dir: Path = typer.Option(..., "--out", help="run folder; run again with the same folder to resume"),
    config: str = typer.Option(DEFAULT_PRESET, "--config", "-c", help=CONFIG_HELP),
    epochs: Optional[int] = typer.Option(None, help="override training.epochs"),
    backbone_weights: Optional[Path] = typer.Option(None, help="official PANNs / E-PANNs .pth to start the backbone from"),
    freeze_backbone_epochs: Optional[int] = typer.Option(None, help="keep the backbone frozen for this many epochs"),
    max_minutes: Optional[float] = typer.Option(None, help="stop after the epoch that passes this wall time"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave out bad clips (listed) instead of stopping"),
) -> None:
    """Train AT2SELD; writes best.pt / last.pt, metrics.csv and curves.png to the run folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from at2seld_edge.data.spec import load_dataset
    from at2seld_edge.training.trainer import train

    cfg, ds = load_config(config), load_dataset(data)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        result = train(cfg, ds, out_dir, epochs=epochs, backbone_weights=backbone_weights,
                       freeze_backbone_epochs=freeze_backbone_epochs, max_minutes=max_minutes, skip_bad=skip_bad,
                       reporter=_progress_reporter(progress))
    v = result.best_val
    out.print(f"best epoch {result.best_epoch} ({result.stopped or 'done'}); validation with calibrated thresholds: "
              f"ER {v.get('ER', float('nan')):.3f}  F {v.get('F', float('nan')):.3f}  LE {v.get('LE', float('nan')):.1f}  "
              f"LR {v.get('LR', float('nan')):.3f}  SELD {v.get('SELD', float('nan')):.3f}")
    out.print(f"checkpoint: {result.run_dir / 'best.pt'}")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Optional[Path] = typer.Option(None, help="checkpoint to evaluate on --data"),
    data: Optional[Path] = typer.Option(None, "--data", help="dataset spec YAML"),
    split: str = typer.Option("test", help="split to evaluate"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for output CSVs, metrics.json, per_class.md"),
    pred: Optional[Path] = typer.Option(None, help="folder of DCASE output CSVs to score (with --ref)"),
    ref: Optional[Path] = typer.Option(None, help="folder of reference metadata CSVs (with --pred)"),
    label_format: str = typer.Option("dcase2023", "--format", help="label format of --ref"),
    num_classes: Optional[int] = typer.Option(None, "--classes", help="number of classes of --ref (default: the format's)"),
    oracle_activity: bool = typer.Option(False, "--oracle-activity", help="also report DOA error given the reference activity"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave out bad clips (listed) instead of stopping"),
) -> None:
    """DCASE SELD metrics (ER, F, LE, LR, SELD score at 20 degrees) of a checkpoint or of output CSVs."""
    import numpy as np

    from at2seld_edge.evaluation.evaluate import evaluate_csv_dirs, evaluate_outputs, predict_clips

    if pred is not None or ref is not None:
        if pred is None or ref is None or checkpoint is not None:
            raise EdgeError("score CSVs with both --pred and --ref (and no --checkpoint)", ErrorKind.USAGE)
        results = evaluate_csv_dirs(pred, ref, label_format, num_classes, out_dir)
        out.print_json(json.dumps(results))
        return
    if checkpoint is None or data is None or out_dir is None:
        raise EdgeError("evaluate a model with --checkpoint, --data and --out (or CSVs with --pred and --ref)", ErrorKind.USAGE)
    from rich.progress import Progress

    from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from at2seld_edge.data.spec import load_dataset

    ckpt, ds = load_checkpoint(checkpoint), load_dataset(data)
    if ckpt.classes != ds.classes:
        raise EdgeError(f"{checkpoint}: trained on classes {ckpt.classes}, but {data} has {ds.classes}")
    model = model_from_checkpoint(ckpt)
    skipped: list[str] = []
    clips = ds.clips(split, skip_bad, skipped)
    for s in skipped:
        err.print(f"skipped: {s}", highlight=False)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"evaluating {split}", total=len(clips))
        outputs = predict_clips(model, clips, progress=lambda: progress.advance(task))
    results = evaluate_outputs(outputs, np.array(ckpt.thresholds), ds.classes, out_dir, oracle_activity,
                               {"checkpoint": str(checkpoint), "split": split, "skipped": skipped})
    table = Table(title=f"{split} split, {len(clips)} clips (thresholds from the checkpoint)")
    for k in results:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.3f}" for v in results.values()))
    out.print(table)
    out.print(f"wrote {out_dir}/metrics.json, per_class.md and output/*.csv")


def main() -> None:
    try:
        app(standalone_mode=True)
    except EdgeError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
