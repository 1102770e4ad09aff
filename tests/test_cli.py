"""The `edge` command as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from at2seld_edge.checkpoint import save_checkpoint
from at2seld_edge.model import build_model
from tests.conftest import preset_dict, variant


def edge(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "at2seld_edge.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def assert_user_error(r: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    text = " ".join(r.stderr.split())  # rich wraps long lines
    for f in fragments:
        assert f in text, text


def test_model_summary_json():
    r = edge("model", "summary", "--config", "at2seld-nano", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert [m["module"] for m in s["modules"]][:2] == ["frontend", "backbone"]
    assert s["total_macs_per_second"] == pytest.approx(sum(m["macs_per_second"] for m in s["modules"]))


def test_model_summary_table_default_preset():
    r = edge("model", "summary")
    assert r.returncode == 0 and "at2seld-nano" in r.stdout and "track_transformer" in r.stdout


def test_unknown_preset_is_exit_1():
    assert_user_error(edge("model", "summary", "--config", "at2seld-nan0"), 1, "unknown preset 'at2seld-nan0'")


def test_config_typo_is_exit_1(write_yaml):
    d = preset_dict()
    d["heads"]["n_track"] = 2
    path = write_yaml(d)
    assert_user_error(edge("model", "summary", "--config", str(path)), 1, str(path), "heads.n_track", "unknown key")


def test_usage_error_is_exit_2():
    r = edge("export", "--dynamic-time")  # --out missing
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_export_from_checkpoint(tmp_path):
    ckpt = tmp_path / "nano.pt"
    save_checkpoint(ckpt, build_model(variant()))
    out = tmp_path / "nano.onnx"
    r = edge("export", "--checkpoint", str(ckpt), "--out", str(out), "--dynamic-time", "--seconds", "0.5")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "max abs diff" in r.stdout


def test_export_refuses_a_checkpoint_with_wrong_keys(tmp_path):
    ckpt = tmp_path / "bad.pt"
    save_checkpoint(ckpt, build_model(variant()))
    blob = torch.load(ckpt, weights_only=True)
    del blob["state_dict"]["heads.doa.bias"]
    torch.save(blob, ckpt)
    out = tmp_path / "m.onnx"
    assert_user_error(edge("export", "--checkpoint", str(ckpt), "--out", str(out)), 1, "missing keys: heads.doa.bias")
    assert not out.exists()


def test_export_refuses_a_checkpoint_of_another_config(tmp_path):
    ckpt = tmp_path / "causal.pt"
    save_checkpoint(ckpt, build_model(variant(smoother={"causal": True})))
    assert_user_error(edge("export", "--config", "at2seld-nano", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")),
                      1, "differs from --config at2seld-nano")


def test_export_with_official_backbone_weights_reports_unused_keys(tmp_path):
    model = build_model(variant())
    sd = {k: v for k, v in model.backbone.state_dict().items()}
    sd["fc1.weight"], sd["fc1.bias"] = torch.zeros(8, 64), torch.zeros(8)
    sd["fc_audioset.weight"], sd["fc_audioset.bias"] = torch.zeros(527, 8), torch.zeros(527)
    weights = tmp_path / "panns.pth"
    torch.save({"model": sd}, weights)
    r = edge("export", "--backbone-weights", str(weights), "--out", str(tmp_path / "m.onnx"), "--seconds", "0.5")
    assert r.returncode == 0, r.stderr
    assert "not used by the SELD model (4): fc1.weight" in " ".join(r.stderr.split())


def _install_hints() -> list[str]:
    from at2seld_edge.cli import SEARCH_EXTRA
    from at2seld_edge.deploy.engine import BUILDERS

    return [SEARCH_EXTRA, *(BUILDERS.get(n).install for n in BUILDERS.names())]


@pytest.mark.parametrize("hint", _install_hints())
def test_error_messages_keep_their_brackets(hint, capsys):
    from at2seld_edge import cli

    with pytest.raises(SystemExit) as exit_:
        cli._fail(f"runs/[x]/a.yaml: {hint}", 1)
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: runs/[x]/a.yaml: {hint}"  # rich markup took "[search]"


def test_a_missing_extra_prints_the_whole_install_line(monkeypatch, capsys, tmp_path):
    from at2seld_edge import cli

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    monkeypatch.setattr(sys, "argv", ["edge", "search", "--data", "d.yaml", "-t", "jetson-orin", "-b", "realtime-100ms",
                                      "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2 and "pip install 'at2seld-edge[search]'" in capsys.readouterr().err


def test_table_cells_and_notes_print_user_text_as_written(capsys):
    from rich.table import Table

    from at2seld_edge import cli

    table = Table(title="bundles/[int8]")
    table.add_column("module")
    table.add_row("[bold]head", cli._verdict("PASS"))
    cli.out.print(table)
    cli.out.print("note: wrote reports/[a]/x.md", highlight=False)
    text = capsys.readouterr().out
    assert "bundles/[int8]" in text and "[bold]head" in text and "PASS" in text and "reports/[a]/x.md" in text


def test_model_presets_lists_every_preset_without_importing_torch():
    code = ("import sys; from typer.testing import CliRunner; from at2seld_edge.cli import app; "
            "r = CliRunner().invoke(app, ['model', 'presets']); print(r.exit_code, 'torch' in sys.modules); "
            "print(r.output)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    status, listing = r.stdout.split("\n", 1)
    assert status == "0 False"  # was "0 True": 7 s and 270 MB to list seven names
    from at2seld_edge.config import load_config, preset_names

    assert listing.strip().splitlines() == [f"{n}: {load_config(n).description}" for n in preset_names()]


@pytest.mark.parametrize("args, fragment", [
    # each a traceback (NaN to int, a terabyte tensor, torch's exporter) or minutes of allocating
    (["model", "summary", "--seconds", "nan"], "--seconds nan: from one label hop to 60 s"),
    (["model", "summary", "--seconds", "1e9"], "--seconds 1e+09: from one label hop to 60 s"),
    (["data", "synth", "--out", "{tmp}/ds", "--seconds", "1e7"], "--seconds 1e+07: a whole number of 100 ms frames, "
                                                                 "from 1 s to 600 s"),
    (["evaluate", "--pred", "{tmp}", "--ref", "{tmp}", "--classes", "100000000"], "--classes 100000000: from 1 to 1000"),
    (["build", "--target", "x86-cpu", "--seconds", "100000", "--out", "{tmp}/b"], "--seconds 100000.0: Input should be "
                                                                                 "less than or equal to 60"),
    (["build", "--target", "x86-cpu", "--opset", "99", "--out", "{tmp}/b"], "--opset 99: Input should be less than or "
                                                                           "equal to 20"),
    (["export", "--out", "{tmp}/m.onnx", "--opset", "99"], "--opset 99: supported opsets are 14"),
])
def test_sizes_on_the_command_line_are_bounded_exit_2_nothing_written(tmp_path, monkeypatch, capsys, args, fragment):
    """In process (the same `main` as the `edge` script): a subprocess per case would import torch each time."""
    from at2seld_edge.cli import main

    monkeypatch.setattr(sys, "argv", ["edge", *(a.format(tmp=tmp_path) for a in args)])
    with pytest.raises(SystemExit) as e:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
