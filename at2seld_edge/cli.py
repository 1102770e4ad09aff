"""The `edge` command. It alone sequences the stages; a user mistake prints one message and exits
with the code from `errors.EXIT_CODES`, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from at2seld_edge.config import DEFAULT_PRESET, load_config, preset_description, preset_names
from at2seld_edge.errors import EXIT_CODES, EdgeError, ErrorKind
from at2seld_edge.limits import MAX_CLASSES, MAX_OPSET, MIN_OPSET
from at2seld_edge.options import Int8Limits

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Put an AT2SELD SELD model on a Jetson-class GPU, inside a budget, with proof.")
def _version(value: bool) -> None:
    if value:
        import at2seld_edge

        print(f"at2seld-edge {at2seld_edge.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the toolkit's version and exit")) -> None:
    """Put an AT2SELD SELD model on a Jetson-class GPU, inside a budget, with proof."""


model_app = typer.Typer(no_args_is_help=True, help="Inspect model presets.")
app.add_typer(model_app, name="model")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthesize the default one, check a spec.")
app.add_typer(data_app, name="data")

# Piped or logged output is not cut at 80 columns: tables keep every figure (a terminal's own width rules there).
# Markup is off: messages carry paths, names and install hints such as pip install 'at2seld-edge[search]',
# whose brackets rich would take for style tags and drop; colour goes through `style=` and `Text` only.
out = Console(width=None if sys.stdout.isatty() else 200, markup=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, markup=False)
VERDICT_STYLE = {"PASS": "green", "ran": "green", "skipped": "yellow", "failed": "red"}


def _verdict(word: str) -> Text:
    """A PASS/FAIL (or step status) table cell, coloured."""
    return Text(word, style=VERDICT_STYLE.get(word, "red"))

CONFIG_HELP = f"preset name ({', '.join(preset_names())}) or path to a YAML config"
TORCH_DEVICE_HELP = "where torch runs: auto (CUDA where there is a GPU), cpu, cuda or cuda:N"
DEFAULT_CALIBRATION_CLIPS = 16  # compress.quantize.DEFAULT_CALIBRATION_CLIPS (checked by a test), kept import-light
DEFAULT_CALIBRATION_METHOD = "percentile"  # likewise
INT8 = Int8Limits()
INT8_HELP = {
    "agreement": "INT8 must agree with the FP32 model on at least this fraction of SED decisions (golden check; "
                 "edge compress and edge build alike)",
    "mean": "largest mean DOA error (degrees) INT8 may add on the tracks the FP32 model calls active",
    "p95": "largest 95th-percentile DOA error (degrees) INT8 may add",
}


def _load_model(config: Optional[str], checkpoint: Optional[Path], backbone_weights: Optional[Path]):
    from at2seld_edge.checkpoint import load_model

    return load_model(config, checkpoint, backbone_weights, say=lambda m: err.print(m, highlight=False))


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
        out.print(f"{name}: {preset_description(name)}", highlight=False)


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

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgeError(f"--opset {opset}: supported opsets are {MIN_OPSET} (the model needs it) to {MAX_OPSET} "
                        "(torch.onnx's newest)", ErrorKind.USAGE)
    model, manifest = _load_model(config, checkpoint, backbone_weights)
    with err.status(Text(f"exporting {model.config.name} to {out_path} ...")):
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
    """Read every split of a dataset spec, every sample included: clip counts, events and problems."""
    from at2seld_edge.data.spec import load_dataset

    ds = load_dataset(data)
    with err.status("reading every clip ...") as status:
        count = [0]

        def tick() -> None:
            count[0] += 1
            status.update(f"reading every clip ... {count[0]}")

        report = ds.check(skip_bad, tick)
    for split, s in report.splits.items():
        out.print(f"{split}: {s.clips} clips, {s.seconds / 60:.1f} min, {s.event_frames} event-frames")
    for s in report.skipped:
        out.print(f"  skipped: {s}", highlight=False)
    for w in report.warnings:
        out.print(f"warning: {w}", highlight=False)


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


def _train_columns():
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())


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
    device: str = typer.Option("auto", help=TORCH_DEVICE_HELP),
    amp: str = typer.Option("off", help="mixed precision: bf16, fp16 (CUDA, with a gradient scaler) or off"),
    workers: int = typer.Option(0, help="DataLoader worker processes reading the wavs (0: the training process)"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (slow start, faster steps)"),
    sync_bn: bool = typer.Option(True, "--sync-bn/--no-sync-bn", help="under torchrun: BatchNorm statistics of "
                                 "the global batch (the single-process run), or of each process's share"),
) -> None:
    """Train AT2SELD; writes best.pt / last.pt, metrics.csv and curves.png to the run folder. Under
    `torchrun --nproc-per-node N -m at2seld_edge.cli train ...` the same command trains in N
    processes (DDP; training.batch_size is the global batch)."""
    from rich.progress import Progress

    from at2seld_edge.data.spec import load_dataset
    from at2seld_edge.training.distributed import is_main_process
    from at2seld_edge.training.trainer import TrainOptions, train

    opts = TrainOptions.from_flags(epochs=epochs, backbone_weights=backbone_weights,
                                   freeze_backbone_epochs=freeze_backbone_epochs, max_minutes=max_minutes,
                                   skip_bad=skip_bad, device=device, amp=amp, workers=workers, compile=compile_model,
                                   sync_bn=sync_bn)
    cfg, ds = load_config(config), load_dataset(data)
    with Progress(*_train_columns(), console=err, transient=True, disable=not is_main_process()) as progress:
        result = train(cfg, ds, out_dir, opts, reporter=_progress_reporter(progress))
    if not is_main_process():
        return
    v = result.best_val
    out.print(f"best epoch {result.best_epoch} ({result.stopped or 'done'}); validation with calibrated thresholds: "
              f"ER {v.get('ER', float('nan')):.3f}  F {v.get('F', float('nan')):.3f}  LE {v.get('LE', float('nan')):.1f}  "
              f"LR {v.get('LR', float('nan')):.3f}  SELD {v.get('SELD', float('nan')):.3f}")
    out.print(f"checkpoint: {result.run_dir / 'best.pt'}")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Optional[Path] = typer.Option(None, help="checkpoint to evaluate on --data"),
    data: Optional[Path] = typer.Option(None, "--data", help="dataset spec YAML (its classes, format, references "
                                        "and splits)"),
    split: Optional[str] = typer.Option(None, help="split to score (default: test with --checkpoint; every "
                                        "reference CSV with --pred); with --ref and no --data, its subfolder of "
                                        "that name or its subfolders NAME-* (dev-test: dev-test-sony, dev-test-tau)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for output CSVs, metrics.json, per_class.md"),
    pred: Optional[Path] = typer.Option(None, help="folder of DCASE output CSVs to score"),
    ref: Optional[Path] = typer.Option(None, help="folder of reference metadata CSVs (default with --data: its "
                                       "metadata folder)"),
    label_format: Optional[str] = typer.Option(None, "--format", help="label format of --ref (default: --data's, "
                                               "else dcase2023)"),
    num_classes: Optional[int] = typer.Option(None, "--classes", help="number of classes of --ref (default: "
                                              "--data's, else the CSVs' largest class index + 1); names are the "
                                              "format's for its own count, else class0, class1, ..."),
    oracle_activity: bool = typer.Option(False, "--oracle-activity", help="also report DOA error given the reference activity"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave out bad clips (listed) instead of stopping"),
    as_json: bool = typer.Option(False, "--json", help="print metrics.json's content instead of tables"),
    device: str = typer.Option("auto", help=TORCH_DEVICE_HELP + " (with --checkpoint)"),
) -> None:
    """DCASE SELD metrics (ER, F, LE, LR, SELD score at 20 degrees; the 2024 ones with distances in
    the references) of a checkpoint on a split, or of output CSVs against references."""
    from at2seld_edge.evaluation.evaluate import CsvScoring, evaluate_csv_dirs, evaluate_outputs, predict_clips

    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise EdgeError(f"--classes {num_classes}: from 1 to {MAX_CLASSES}", ErrorKind.USAGE)
    if out_dir is not None:
        from at2seld_edge.io import check_output_dir

        check_output_dir(out_dir, is_ours=lambda p: (p / "metrics.json").is_file(), what="evaluation folder")
    if pred is not None:
        if checkpoint is not None:
            raise EdgeError("score CSVs with --pred (and --ref or --data), or a model with --checkpoint; not both",
                            ErrorKind.USAGE)
        scoring = CsvScoring.resolve(pred, ref, data, split, label_format, num_classes)
        scores = evaluate_csv_dirs(scoring, out_dir)
        _print_scores(scores, f"{pred} against {scoring.ref_dir}" + (f" ({split} split)" if split else ""), as_json)
        return
    if ref is not None or checkpoint is None or data is None or out_dir is None:
        raise EdgeError("evaluate a model with --checkpoint, --data and --out (or CSVs with --pred and --ref)",
                        ErrorKind.USAGE)
    import numpy as np
    from rich.progress import Progress

    from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from at2seld_edge.data.spec import load_dataset
    from at2seld_edge.devices_torch import DeviceModel, resolve_device

    torch_device = resolve_device(device)

    ckpt, ds = load_checkpoint(checkpoint), load_dataset(data)
    if ckpt.classes != ds.classes:
        raise EdgeError(f"{checkpoint}: trained on classes {ckpt.classes}, but {data} has {ds.classes}")
    split = split or "test"
    model = model_from_checkpoint(ckpt)
    skipped: list[str] = []
    clips = ds.clips(split, skip_bad, skipped)
    for s in skipped:
        err.print(f"skipped: {s}", highlight=False)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(escape(f"evaluating {split}"), total=len(clips))  # a markup template column
        outputs = predict_clips(DeviceModel(model, torch_device), clips, progress=lambda: progress.advance(task))
    scores = evaluate_outputs(outputs, np.array(ckpt.thresholds), ds.classes, out_dir, oracle_activity,
                              {"checkpoint": str(checkpoint), "split": split, "skipped": skipped},
                              with_2024=ds.spec.label_format.has_distance)
    _print_scores(scores, f"{split} split, {len(clips)} clips (thresholds from the checkpoint)", as_json)
    out.print(f"wrote {out_dir}/metrics.json, per_class.md and output/*.csv", highlight=False)


def _print_scores(scores, title: str, as_json: bool) -> None:
    """The metrics tables (one per DCASE variant) and the notes; or the JSON of metrics.json."""
    if as_json:
        out.print_json(json.dumps(scores.to_json()))
        return
    for family, results in scores.results.items():
        table = Table(title=f"{title}: {family} metrics")
        for k in results:
            table.add_column(k, justify="right")
        table.add_row(*(f"{v:.3f}" for v in results.values()))
        out.print(table)
    extra = scores.extra.get("oracle_activity_DOA_error")
    if extra is not None:
        out.print(f"DOA error with oracle activity: {extra:.2f} deg", highlight=False)
    for note in scores.notes:
        out.print(f"note: {note}", highlight=False)


@app.command("compress")
def compress_cmd(
    checkpoint: Path = typer.Option(..., help="trained at2seld-edge checkpoint"),
    data: Path = typer.Option(..., "--data", help="dataset spec YAML (fine-tuning, calibration, scoring)"),
    out_dir: Path = typer.Option(..., "--out", help="folder to write (must not exist or be empty)"),
    prune_ratio: Optional[float] = typer.Option(None, help="fraction of each backbone conv's filters to remove, in (0, 1)"),
    target_macs: Optional[str] = typer.Option(None, help="prune until the model costs at most this many MACs per "
                                              "second of audio (e.g. 150M)"),
    prune_method: str = typer.Option("passive", help="filter importance: passive (operator norm) or l1"),
    finetune_epochs: int = typer.Option(0, help="fine-tune the pruned model this many epochs"),
    int8: bool = typer.Option(False, "--int8", help="calibrate and write the Q/DQ INT8 model"),
    calib_clips: int = typer.Option(DEFAULT_CALIBRATION_CLIPS, help="training clips for INT8 calibration"),
    calib_method: str = typer.Option(DEFAULT_CALIBRATION_METHOD, help="minmax, entropy or percentile (99.999th)"),
    tolerance: float = typer.Option(0.01, help="largest SELD-score increase an INT8 module may cause (validation)"),
    int8_min_agreement: float = typer.Option(INT8.int8_min_agreement, help=INT8_HELP["agreement"]),
    int8_max_doa_mean: float = typer.Option(INT8.int8_max_doa_mean, help=INT8_HELP["mean"]),
    int8_max_doa_p95: float = typer.Option(INT8.int8_max_doa_p95, help=INT8_HELP["p95"]),
    device: str = typer.Option("auto", help=TORCH_DEVICE_HELP + " (fine-tuning)"),
) -> None:
    """Prune, fine-tune, fold BatchNorm, export, quantize to INT8; report every variant side by side."""
    from rich.progress import Progress

    from at2seld_edge.compress.pipeline import CompressOptions, compress
    from at2seld_edge.data.spec import load_dataset

    opts = CompressOptions.from_flags(
        prune_ratio=prune_ratio, target_macs=target_macs, prune_method=prune_method, finetune_epochs=finetune_epochs,
        int8=int8, calib_clips=calib_clips, calib_method=calib_method, tolerance=tolerance,
        int8_min_agreement=int8_min_agreement, int8_max_doa_mean=int8_max_doa_mean, int8_max_doa_p95=int8_max_doa_p95,
        device=device)
    ds = load_dataset(data)
    with Progress(*_train_columns(), console=err, transient=True) as progress:
        report = compress(checkpoint, ds, out_dir, opts, say=lambda m: progress.console.print(m, highlight=False),
                          train_reporter=_progress_reporter(progress))
    table = Table(title=f"compression of {checkpoint} (test split, ONNX Runtime CPU, 1 s window)",
                  caption="latency: the graphs timed in turn over rounds; median (range over the rounds)")
    for col in ("variant", "params", "backbone MMAC/s", "MMAC/s", "MB", "F", "LE", "SELD", "median ms", "speed-up"):
        table.add_column(col, justify="left" if col == "variant" else "right", overflow="fold")  # wrap, never cut
    for v in report.variants:
        table.add_row(v.name + (f" (same graph as {v.same_graph_as})" if v.same_graph_as else ""), f"{v.params:,}",
                      f"{v.backbone_macs_per_second / 1e6:,.1f}", f"{v.macs_per_second / 1e6:,.1f}",
                      f"{v.size_bytes / 1e6:.2f}", f"{v.metrics['F']:.3f}", f"{v.metrics['LE']:.1f}",
                      f"{v.metrics['SELD']:.4f}", *v.timing_cells())
    out.print(table)
    out.print(f"wrote {out_dir}/compression_report.md and .json", highlight=False)


devices_app = typer.Typer(help="Target devices (devices/*.yaml).")
app.add_typer(devices_app, name="devices")


@devices_app.callback(invoke_without_command=True)
def devices_list(ctx: typer.Context) -> None:
    """List the target devices (user overrides first, then the shipped files); `edge devices show
    NAME` prints one, `edge devices calibrate` fits one's latency constants from a bench."""
    if ctx.invoked_subcommand is not None:
        return
    from at2seld_edge.deploy.devices import FAMILIES, USER_DIR_ENV, device_names, load_device, user_device_dir, \
        user_device_names

    table = Table(title="target devices", caption="dense peak throughput at maximum clocks; estimate: per-layer floor "
                  "and per-inference cost of the latency model; " + ", ".join(f"{k} = {v}" for k, v in FAMILIES.items()))
    for col in ("name", "kind", "FP32 TFLOPS", "FP16 TFLOPS", "INT8 TOPS", "memory GB", "GB/s", "estimate", "file"):
        table.add_column(col, justify="left" if col in ("name", "kind", "estimate", "file") else "right",
                         no_wrap=col == "name")
    for name in sorted(set(device_names()) | set(user_device_names())):
        d = load_device(name)
        t, c = d.throughput, d.estimate_constants()
        origin = d.origin.replace("shipped devices/", "shipped ")
        table.add_row(d.name, d.kind, f"{t.fp32_tflops:g}", f"{t.fp16_tflops:g}", f"{t.int8_tops:g}",
                      f"{d.memory.size_gb:g}", f"{d.memory.bandwidth_gbs:g}",
                      f"{c.per_layer_us:.3g} us/layer + {c.per_inference_us:.3g} us", origin)
    out.print(table)
    out.print(f"user device files (edge devices calibrate writes them; they override shipped ones of the same name): "
              f"{user_device_dir()} (${USER_DIR_ENV} sets another)", highlight=False, soft_wrap=True)


@devices_app.command("show")
def devices_show(name: str = typer.Argument(..., help="device name, family name or YAML path")) -> None:
    """Print one device's spec (validated)."""
    import yaml

    from at2seld_edge.deploy.devices import load_device

    device = load_device(name)
    out.print(f"# {device.origin}", highlight=False, soft_wrap=True)
    out.print(yaml.safe_dump(device.model_dump(mode="json"), sort_keys=False), highlight=False, soft_wrap=True)


@devices_app.command("calibrate")
def devices_calibrate(
    bench_json: list[Path] = typer.Option(..., "--bench", help="edge bench JSON (repeat for several, e.g. FP16 and "
                                          "INT8 of the same device)"),
    name: Optional[str] = typer.Option(None, "--name", help="device name to write (default: the device the bench "
                                       "measured, overriding its shipped file)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="fit and print, write nothing"),
) -> None:
    """Fit the latency model's constants to what edge bench measured; write a user-level device
    file that the next estimate for that name uses."""
    from at2seld_edge.deploy.calibrate import PARAMS, calibrate

    cal = calibrate(bench_json, name, write=not dry_run)
    r = cal.result
    table = Table(title=f"{cal.device.name}: latency constants fitted on {len(r.rows)} measurements",
                  caption=f"log-RMS error {r.log_rms(False):.3f} with the previous constants, {r.log_rms():.3f} fitted")
    for col in ("constant", "before", "fitted", "constrained by the data"):
        table.add_column(col, justify="left" if col == "constant" else "right")
    for key in PARAMS:
        table.add_row(key, f"{getattr(r.prior, key):.4g}", f"{getattr(r.constants, key):.4g}",
                      "yes" if r.determined[key] else "no (kept at the previous value)")
    out.print(table)
    rows = Table(title="measured vs estimate")
    for col in ("measurement", "measured ms", "before ms", "fitted ms"):
        rows.add_column(col, justify="left" if col == "measurement" else "right")
    for label, measured, before, after in r.rows[:20]:
        rows.add_row(label[:60], f"{measured:.3f}", f"{before:.3f}", f"{after:.3f}")
    out.print(rows)
    for key in r.at_bounds():
        out.print(f"{key} is at its bound: the device file's peak or bandwidth is below what was measured, "
                  "or the measurements disagree with each other", style="yellow", highlight=False)
    if dry_run:
        out.print("dry run: nothing written", highlight=False)
    else:
        out.print(f"wrote {cal.path}; estimates for {cal.device.name} now use it (edge devices lists it)",
                  highlight=False, soft_wrap=True)


@app.command("profile")
def profile_cmd(
    target: str = typer.Option(..., "--target", "-t", help="device name (edge devices), family name or YAML path"),
    budget: str = typer.Option(..., "--budget", "-b", help="budget name (profiles/) or YAML path"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="at2seld-edge checkpoint"),
    onnx_file: Optional[Path] = typer.Option(None, "--onnx", help="ONNX file (exported by edge export, or any)"),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8: bytes and roofline (and the TensorRT engine)"),
    backend: Optional[str] = typer.Option(None, help="where latency is measured: torch (default), onnxruntime "
                                          "(default for --onnx) or tensorrt"),
    device: str = typer.Option("cpu", help="where torch or onnxruntime run: cpu, cuda or auto (onnxruntime on cuda "
                               "needs onnxruntime-gpu)"),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="torch on cuda: replay CUDA graphs (one of the "
                                     "whole model end to end, one per module), as a deployed engine does"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for report.md, report.json, report.png "
                                           "(default reports/profile-SOURCE-DEVICE-PRECISION)"),
    iterations: int = typer.Option(30, help="timed runs (median and p95 over them)"),
    warmup: int = typer.Option(5, help="untimed runs first"),
    fail_on_violation: bool = typer.Option(False, "--fail-on-violation", help="exit 3 when anything is over budget"),
) -> None:
    """Per-module cost (params, MACs, memory; latency measured, estimated for the target, and its
    roofline bound) checked against a device budget."""
    from at2seld_edge.deploy.profile_request import ProfileRequest, run_profile
    from at2seld_edge.deploy.report import check_rows, latency_basis, module_header, module_rows

    req = ProfileRequest.from_flags(target=target, budget=budget, config=config, checkpoint=checkpoint, onnx=onnx_file,
                                    precision=precision, backend=backend, iterations=iterations, warmup=warmup,
                                    out=out_dir, device=device, cuda_graphs=cuda_graphs)
    with err.status("profiling ...") as status:
        result = run_profile(req, status=lambda m: status.update(Text(m)))
    prof, bud = result.profile, result.budget
    title = (f"{prof.config_name or prof.source} on {result.device.name} ({prof.precision}, {prof.backend}; "
             f"latency checked: {prof.latency_checked})")
    table = Table(title=title, caption=f"one inference over {prof.window_s:g} s of audio; roofline = max(2 MACs / peak, "
                  "bytes / bandwidth), a bound; estimate = the target's layers, each max(roofline, per-layer floor), "
                  "+ a fixed cost")
    for col in module_header(prof):
        table.add_column(col, justify="left" if col == "module" else "right")
    rows = module_rows(prof)
    for r in rows[:-1]:
        table.add_row(*r)
    table.add_section()
    table.add_row(*rows[-1])
    out.print(table)
    if prof.residue_ms is not None and prof.total.latency is not None:
        e2e = prof.total.latency.median_ms
        out.print(f"end-to-end {e2e:.2f} ms; modules sum to {e2e - prof.residue_ms:.2f} ms; residue "
                  f"{prof.residue_ms:.2f} ms ({prof.residue_ms / e2e:+.1%})", highlight=False)
    out.print(f"latency checked against {latency_basis(prof)}", highlight=False)
    _print_checks(f"budget {bud.name}", check_rows(result.checks))
    for note in prof.notes:
        out.print(f"note: {note}", highlight=False)
    out.print("wrote " + ", ".join(str(p) for p in result.written), highlight=False)
    if result.violation is not None:
        if fail_on_violation:
            raise result.violation
        out.print(str(result.violation), style="yellow", highlight=False)


def _print_checks(title: str, rows: list[list[str]]) -> None:
    table = Table(title=title)
    for col in ("scope", "limit", "value", "budget", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r[:-1], _verdict(r[-1]))
    out.print(table)


# ----------------------------------------------------------------------------- deployment

BACKEND_HELP = "auto (TensorRT where the bundle has an engine and TensorRT is here, else ONNX Runtime), onnxruntime or tensorrt"


@app.command("build")
def build_cmd(
    target: str = typer.Option(..., "--target", "-t", help="device name (edge devices), family name or YAML path"),
    checkpoint: Optional[Path] = typer.Option(None, help="trained checkpoint (default: the embedded at2seld-nano "
                                              "trained on the synthetic set; with --streaming, at2seld-nano-causal)"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="build an untrained preset instead (sizing only)"),
    compressed: Optional[Path] = typer.Option(None, help="an edge compress output folder: its final checkpoint, and for "
                                              "INT8 the modules its sensitivity analysis kept in floating point"),
    precision: str = typer.Option("fp16", help="fp32, fp16, int8 or best (INT8 + FP16)"),
    budget: str = typer.Option("realtime-100ms", "--budget", "-b", help="budget the profile is checked against"),
    dla: bool = typer.Option(False, "--dla", help="run what it can on DLA core 0, GPU fallback (needs --seconds)"),
    seconds: Optional[float] = typer.Option(None, help="static input of this many seconds (default: dynamic time axis, "
                                            "1 hop to 60 s, optimized for the budget's window)"),
    dynamic_time: bool = typer.Option(False, "--dynamic-time", help="dynamic time axis (the default; excludes --seconds)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="bundle folder (default bundles/CONFIG-DEVICE-PRECISION)"),
    data: Optional[Path] = typer.Option(None, "--data", help="dataset spec for INT8 calibration (default: the "
                                        "compression run's with --compressed, else synthetic scenes)"),
    calib_clips: Optional[int] = typer.Option(None, help=f"clips for INT8 calibration (default: the compression "
                                              f"run's with --compressed, else {DEFAULT_CALIBRATION_CLIPS})"),
    calib_method: Optional[str] = typer.Option(None, help="minmax, entropy or percentile (default: the compression "
                                               "run's with --compressed, else percentile)"),
    keep_float: Optional[str] = typer.Option(None, help="comma-separated modules INT8 leaves in floating point "
                                             "(the front-end always)"),
    int8_min_agreement: float = typer.Option(INT8.int8_min_agreement, help=INT8_HELP["agreement"]),
    int8_max_doa_mean: float = typer.Option(INT8.int8_max_doa_mean, help=INT8_HELP["mean"]),
    int8_max_doa_p95: float = typer.Option(INT8.int8_max_doa_p95, help=INT8_HELP["p95"]),
    tensorrt: Optional[str] = typer.Option(None, help="TensorRT version to lint and build for (default: the target's "
                                           "newest JetPack's)"),
    opset: Optional[int] = typer.Option(None, help="ONNX opset (default 17; 16 for TensorRT 8.5, which lacks LayerNormalization)"),
    implicit_int8: bool = typer.Option(False, "--implicit-int8", help="TensorRT 8.x: engine from the FP32 graph and "
                                       "the calibration cache instead of the Q/DQ graph"),
    engine: bool = typer.Option(True, "--engine/--no-engine", help="build the TensorRT engine where TensorRT and a GPU are here"),
    streaming: bool = typer.Option(False, "--streaming", help="a streaming bundle (edge run --stream): needs a causal "
                                   "model; without --checkpoint, the embedded causal default at2seld-nano-causal"),
) -> None:
    """Checkpoint -> deployment bundle: fusion, export, INT8, TensorRT lint, golden check, profile, engine."""
    from at2seld_edge.deploy.build import BuildOptions, build

    if seconds is not None and dynamic_time:
        raise EdgeError("give --seconds (static input) or --dynamic-time, not both", ErrorKind.USAGE)
    opts = BuildOptions.from_flags(
        target=target, checkpoint=checkpoint, config=config, compressed=compressed, precision=precision, budget=budget,
        dla=dla, seconds=seconds, out=out_dir, data=data, calib_clips=calib_clips, calib_method=calib_method,
        tensorrt=tensorrt, opset=opset, implicit_int8=implicit_int8, build_engine=engine, streaming=streaming,
        keep_float=tuple(m.strip() for m in keep_float.split(",")) if keep_float else (),
        int8_min_agreement=int8_min_agreement, int8_max_doa_mean=int8_max_doa_mean, int8_max_doa_p95=int8_max_doa_p95)
    result = build(opts, say=lambda m: err.print(m, highlight=False, soft_wrap=True))
    m = result.manifest
    failed = [c for c in result.checks if not c.passed]
    out.print(f"wrote bundle {result.out} ({m.precision}, {len(m.files)} files, target {m.target}, TensorRT "
              f"{m.target_tensorrt} lint {'clean' if not result.lint.errors else 'FAILED'}, golden check "
              f"{'PASS' if result.verify.passed else 'FAILED'}, budget {'PASS' if not failed else f'{len(failed)} over'}"
              f"{', engine ' + m.engine.file if m.engine else ''})", highlight=False)
    for c in failed:
        out.print(f"over budget: {c.describe()}", style="yellow", highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder (edge build)"),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto", help="ONNX Runtime provider: auto, cpu or cuda"),
) -> None:
    """Run the golden inputs on a local backend and compare with the golden outputs."""
    from at2seld_edge.deploy.runtime import SeldRuntime
    from at2seld_edge.deploy.verify import verify

    _check_device(device)
    rt = SeldRuntime(bundle, backend, device)
    report = verify(rt)
    header, rows = report.table()
    table = Table(title=f"verify {bundle} on {report.backend} ({report.precision} tolerances)")
    for col in header:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*r[:-1], _verdict(r[-1]))
    out.print(table)
    if not report.passed:
        raise EdgeError(f"{bundle}: {report.backend} does not reproduce the golden outputs: " + "; ".join(report.failures),
                        ErrorKind.CHECK)
    out.print("PASS", highlight=False)


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise EdgeError(f"--device {device!r}: expected auto, cpu or cuda", ErrorKind.USAGE)


@app.command("run")
def run_cmd(
    wav: Path = typer.Argument(..., help="4-channel FOA wav (ACN/SN3D)"),
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder (edge build)"),
    out_csv: Optional[Path] = typer.Option(None, "--out", help="DCASE output CSV (default: INPUT name .csv here); "
                                           "the plot goes beside it as .png"),
    resample: bool = typer.Option(False, "--resample", help="resample a wav at another rate instead of refusing it"),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto", help="ONNX Runtime provider: auto, cpu or cuda"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="write the PNG of events over time"),
    stream: bool = typer.Option(False, "--stream", help="feed the file as a live stream, one 100 ms hop at a time "
                                "(causal bundles)"),
    repair: bool = typer.Option(False, "--repair", help="set non-finite samples (NaN, Inf) to 0 with a warning "
                                "instead of refusing the file"),
) -> None:
    """Detect and localize the events of one recording: DCASE CSV (frame, class, track, azimuth, elevation)."""
    from at2seld_edge.deploy.run import RunOptions, run_file
    from at2seld_edge.deploy.runtime import SeldRuntime

    _check_device(device)
    rt = SeldRuntime(bundle, backend, device)
    target = out_csv or Path(wav.with_suffix(".csv").name)
    result = run_file(rt, wav, RunOptions(target, plot, resample, stream, repair),
                      warn=lambda m: err.print(m, highlight=False, markup=False, soft_wrap=True))  # one line each
    n_events = sum(len(d) for d in result.frames.values())
    out.print(f"{wav}: {result.n_frames} frames, {n_events} detections in {len(result.frames)} frames "
              f"({rt.session.name}); wrote {result.csv}" + (f" and {result.png}" if result.png else ""), highlight=False)


@app.command("bench")
def bench_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="bundle folder (edge build)"),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto", help="ONNX Runtime provider: auto, cpu or cuda"),
    iterations: int = typer.Option(100, help="timed inferences"),
    warmup: int = typer.Option(10, help="untimed inferences first"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for bench-BACKEND.json and .md (default "
                                           "reports/bench-BUNDLE; a bundle holds only what its manifest lists)"),
    fit_device: Optional[str] = typer.Option(None, "--fit-device", help="device spec the measurements calibrate "
                                             "(edge devices calibrate; default: the bundle's target for a TensorRT "
                                             "engine, x86-cpu for ONNX Runtime on the CPU)"),
) -> None:
    """Latency (median/p95/p99), throughput, real-time factor, memory and power of a bundle, and
    what `edge devices calibrate` fits the latency model from."""
    from at2seld_edge.deploy.bench import bench, write_bench
    from at2seld_edge.deploy.runtime import SeldRuntime

    _check_device(device)
    if iterations < 2 or warmup < 0:
        raise EdgeError("--iterations must be at least 2 and --warmup at least 0", ErrorKind.USAGE)
    from at2seld_edge.io import check_output_dir

    out_dir = out_dir or Path("reports") / f"bench-{bundle.resolve().name}"
    check_output_dir(out_dir, is_ours=lambda p: any(p.glob("bench-*.json")), what="bench report folder")
    rt = SeldRuntime(bundle, backend, device)
    with err.status(Text(f"benchmarking {bundle} on {rt.session.name} ({warmup} warm-up + {iterations} timed) ...")):
        report = bench(rt, iterations, warmup, fit_device)
    table = Table(title=f"{bundle}: {report.backend}, {report.precision}, batch 1")
    for col in ("latency", "median ms", "p95 ms", "p99 ms", "mean ms", "runs"):
        table.add_column(col, justify="left" if col == "latency" else "right")
    for r in report.rows():
        table.add_row(*r)
    out.print(table)
    summary = Table(show_header=False)
    summary.add_column("measure")
    summary.add_column("value")
    for r in report.summary_rows():
        summary.add_row(*r)
    out.print(summary)
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    paths = write_bench(report, out_dir)
    out.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)
    if report.fit is not None:
        out.print(f"calibration data for {report.fit['device']}: edge devices calibrate --bench {paths[0]}",
                  highlight=False, soft_wrap=True)


@app.command("selftest")
def selftest_cmd(
    target: str = typer.Option("jetson-orin", "--target", "-t", help="device name (edge devices), family or YAML"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="report folder (default reports/selftest-DEVICE)"),
    iterations: int = typer.Option(50, help="timed inferences per bench"),
    warmup: int = typer.Option(5, help="untimed inferences first"),
    calib_clips: int = typer.Option(4, help="clips for the INT8 bundle's calibration"),
    install: bool = typer.Option(False, "--install", help="also write the fitted device file to the user folder "
                                 "(as edge devices calibrate does)"),
) -> None:
    """The on-device acceptance run: build FP16 and INT8 bundles of the embedded default, verify,
    bench, compare with the latency estimate, fit the device's constants; one report. Steps that
    need TensorRT or a GPU are listed as skipped where they are missing."""
    from at2seld_edge.deploy.selftest import SelftestOptions, run_selftest

    opts = SelftestOptions.from_flags(target=target, out=out_dir, iterations=iterations, warmup=warmup,
                                      calib_clips=calib_clips, install=install)
    report = run_selftest(opts, say=lambda m: err.print(m, highlight=False))
    table = Table(title=report.title())
    for col in ("step", "status", "s", "detail"):
        table.add_column(col, justify="right" if col == "s" else "left")
    for st in report.steps:
        table.add_row(st.name, _verdict(st.status), f"{st.seconds:.1f}", st.detail)
    out.print(table)
    for c in report.comparisons:
        fitted = "-" if c.fitted_ms is None else f"{c.fitted_ms:.2f}"
        out.print(f"{c.precision} on {c.ran_on} ({c.device}): bench median {c.bench_ms:.2f} ms, profiled end to end "
                  f"{c.profiled_ms:.2f} ms (what the fit uses); estimate for {c.device} {c.estimate_ms:.2f} ms "
                  f"({c.ratio:.2f}x the profiled), fitted {fitted} ms; estimate on {report.target} "
                  f"{c.target_estimate_ms:.2f} ms (not measured)", highlight=False)
    out.print("wrote " + ", ".join(str(p) for p in report.written), highlight=False)
    if report.failed:
        raise EdgeError("selftest failed: " + "; ".join(f"{s.name}: {s.detail}" for s in report.failed),
                        ErrorKind.CHECK)


# ----------------------------------------------------------------------------- search and diagnostics

SEARCH_EXTRA = "edge search and edge ablate need Optuna: pip install 'at2seld-edge[search]'"


def _search_extra() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise EdgeError(SEARCH_EXTRA, ErrorKind.USAGE) from None


def _say(text: str) -> None:
    err.print(text, highlight=False, soft_wrap=True)


@app.command("search")
def search_cmd(
    data: Path = typer.Option(..., "--data", help="dataset spec YAML (trials train on train, score on val)"),
    target: str = typer.Option(..., "--target", "-t", help="device name (edge devices), family name or YAML path"),
    budget: str = typer.Option(..., "--budget", "-b", help="budget name (profiles/) or YAML path: its latency, "
                               "peak memory and parameter limits are the search's constraints"),
    out_dir: Path = typer.Option(..., "--out", help="folder for pareto.png, report.md, best.yaml (and search.db)"),
    stage: str = typer.Option("all", help="1, 2, 3 or all; each stage starts from the previous stage's choice"),
    trials: int = typer.Option(8, help="finished trials per stage, over every worker (stage 1: at most its grid)"),
    storage: Optional[str] = typer.Option(None, help="SQLAlchemy URL shared by the workers (default "
                                          "sqlite:///OUT/search.db); postgresql://... for many machines"),
    study: str = typer.Option("edge-search", help="study name; rerun the same command to continue it"),
    epochs: int = typer.Option(4, help="training epochs per trial"),
    config: str = typer.Option(DEFAULT_PRESET, "--config", "-c", help="stage 1's base: " + CONFIG_HELP),
    space: Optional[Path] = typer.Option(None, help="search space YAML (default: the nano-sized space; "
                                         "at2seld_edge/search/space.py)"),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8: the precision the latency is estimated at"),
    sampler: str = typer.Option("tpe", help="stages 2 and 3: tpe or nsga2 (multi-objective, with constraints)"),
    pruner: str = typer.Option("median", help="median, halving or none: stops trials on per-epoch validation SELD"),
    skip_infeasible: bool = typer.Option(False, "--skip-infeasible", help="prune over-budget trials before training"),
    seed: int = typer.Option(0, help="sampler seed"),
    heartbeat: int = typer.Option(30, help="seconds between a trial's heartbeats; a trial silent for twice as long "
                                  "is failed and retried"),
    device: str = typer.Option("auto", help=TORCH_DEVICE_HELP),
    workers: int = typer.Option(0, help="DataLoader worker processes per trial (as edge train)"),
) -> None:
    """Hardware-aware staged architecture search on Optuna: validation SELD and the device latency
    estimate, under the budget's limits as constraints. Several processes with one --storage and
    --study share the work."""
    _search_extra()
    from at2seld_edge.search.search import SearchOptions, run_search

    opts = SearchOptions.from_flags(data=data, out=out_dir, config=config, stage=stage, trials=trials, epochs=epochs,
                                    storage=storage, study=study, space=space, precision=precision, sampler=sampler,
                                    pruner=pruner, skip_infeasible=skip_infeasible, seed=seed, heartbeat=heartbeat,
                                    device=device, workers=workers)
    from at2seld_edge.deploy.search_cost import search_device
    from at2seld_edge.search.report import write_outputs

    out.print(f"storage: {opts.storage_url()}  (optuna-dashboard {opts.storage_url()})", highlight=False,
              soft_wrap=True)
    run = run_search(opts, search_device(target, budget, opts.precision), say=_say)
    for r in run.results:
        chosen = "nothing (no feasible trial)" if r.chosen is None else (
            f"trial {r.chosen.number}: val SELD {r.chosen.values[0]:.3f}, latency {r.chosen.values[1]:.2f} ms")
        out.print(f"stage {r.stage} chose {chosen}", highlight=False)
    out.print("wrote " + ", ".join(str(p) for p in write_outputs(run)), highlight=False)


@app.command("ablate")
def ablate_cmd(
    data: Path = typer.Option(..., "--data", help="dataset spec YAML"),
    out_dir: Path = typer.Option(..., "--out", help="folder for ablation.md, ablation.png, ablation.json, runs/"),
    config: str = typer.Option(DEFAULT_PRESET, "--config", "-c", help="the base: " + CONFIG_HELP),
    seeds: int = typer.Option(3, help="training seeds per variant (0..K-1)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs per run (default: the config's)"),
    split: str = typer.Option("test", help="split the runs are scored on"),
    subset: float = typer.Option(0.7, help="the balanced-subset variant's fraction of the training clips"),
    backbone_weights: Optional[Path] = typer.Option(None, help="official backbone weights: adds the pretrained vs "
                                                    "random initialisation row"),
    storage: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default sqlite:///OUT/ablate.db)"),
    study: str = typer.Option("edge-ablate", help="study name; rerun the same command to continue it"),
    heartbeat: int = typer.Option(30, help="seconds between a run's heartbeats"),
    device: str = typer.Option("auto", help=TORCH_DEVICE_HELP),
    workers: int = typer.Option(0, help="DataLoader worker processes per run"),
) -> None:
    """The method's diagnostics: class balancing, focal vs BCE, active-only vs full DOA supervision,
    calibrated vs fixed thresholds (and pretrained vs random backbone), as changes against the base
    config, mean +- std over seeds."""
    _search_extra()
    from at2seld_edge.search.ablate import METRICS, AblateOptions, run_ablation

    opts = AblateOptions.from_flags(data=data, out=out_dir, config=config, seeds=seeds, epochs=epochs, split=split,
                                    subset=subset, backbone_weights=backbone_weights, storage=storage, study=study,
                                    heartbeat=heartbeat, device=device, workers=workers)
    out.print(f"storage: {opts.storage_url()}", highlight=False, soft_wrap=True)
    result = run_ablation(opts, say=_say)
    table = Table(title=f"edge ablate {config} on the {split} split: variant - base, mean +- std over seeds")
    for col in ("change", "seeds", *METRICS):
        table.add_column(col, justify="left" if col == "change" else "right")
    for row in result["rows"]:
        table.add_row(*row)
    out.print(table)
    out.print(f"wrote {out_dir}/ablation.md, ablation.png, ablation.json", highlight=False)

def main() -> None:
    try:
        app(standalone_mode=True)
    except EdgeError as e:
        _fail(str(e), e.exit_code)
    except OSError as e:  # the file system said no (read-only, full, a file where a folder goes): one line
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"{where}{e.strerror or e}", EXIT_CODES[ErrorKind.INPUT])


def _fail(message: str, code: int) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
