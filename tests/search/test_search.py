"""`edge search` on tiny data: constraints, the choice, the outputs, resume after a kill, duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from at2seld_edge.config import load_config
from at2seld_edge.errors import EdgeError
from at2seld_edge.search.report import write_outputs
from at2seld_edge.search.search import Cost, DeviceBudget, Limits, SearchOptions, queue_untried, run_search, stage_name
from at2seld_edge.search.space import Param
from at2seld_edge.search.study import DuplicateParams, claim_params, open_storage, record_setup
from at2seld_edge.training.trainer import train
from tests.search.conftest import tiny_files
from tests.test_cli import assert_user_error, edge


def spectral_is_slow(cfg) -> Cost:
    """A stand-in for the latency model: the spectral front-end costs 3 ms, logmel_iv 1 ms."""
    return Cost(3.0 if cfg.frontend.descriptors == "spectral" else 1.0, 10.0, 0.9)


def fake_device(latency_limit: float) -> DeviceBudget:
    return DeviceBudget("test-device", "test-budget", "fp16", Limits(latency_limit, 100.0, None), spectral_is_slow)


def options(tmp_path, tiny_data, **kw) -> SearchOptions:
    cfg, space = tiny_files(tmp_path / "in")
    return SearchOptions(data=tiny_data.spec_path, out=tmp_path / "out", config=str(cfg), space=space,
                         **{"epochs": 1, "trials": 2, "device": "cpu", **kw})


def test_constraints_mark_infeasible_trials_which_are_shown_never_chosen(tmp_path, tiny_data):
    opts = options(tmp_path, tiny_data, stage="1")
    run = run_search(opts, fake_device(latency_limit=2.0))
    study = run.results[0].study
    trials = {t.params["frontend.descriptors"]: t for t in study.get_trials()}
    assert {t.state for t in trials.values()} == {TrialState.COMPLETE}  # both trained and kept
    slow, fast = trials["spectral"], trials["logmel_iv"]
    assert slow.user_attrs["constraints"][0] == pytest.approx(1.0) and slow.system_attrs["constraints:latency_ms"] > 0
    assert fast.user_attrs["constraints"][0] < 0 and slow.values[1] == 3.0
    assert run.results[0].chosen.number == fast.number  # whatever the scores: the other is over budget
    written = write_outputs(run)
    assert [p.name for p in written] == ["pareto.png", "report.md", "best.yaml"]
    report = (opts.out / "report.md").read_text()
    assert "1 over budget" in report and "| over |" in report and f"**Chose trial {fast.number}**" in report
    best = load_config(opts.out / "best.yaml")  # what `edge train --config best.yaml` reads
    assert best.frontend.descriptors == "logmel_iv" and best.name == "edge-search-best"
    result = train(best, tiny_data, tmp_path / "best-run", epochs=1)
    assert result.best_epoch == 1


def test_skip_infeasible_prunes_before_training_and_a_stage_needs_its_predecessor(tmp_path, tiny_data):
    opts = options(tmp_path, tiny_data, stage="1", skip_infeasible=True)
    run = run_search(opts, fake_device(latency_limit=0.5))  # nothing fits
    states = [t.state for t in run.results[0].study.get_trials()]
    assert states == [TrialState.PRUNED, TrialState.PRUNED] and run.results[0].chosen is None
    assert not (opts.out / "trials").exists()
    with pytest.raises(EdgeError, match="stage 2 starts from stage 1's choice"):
        run_search(opts.model_copy(update={"stage": "2"}), fake_device(latency_limit=0.5))
    with pytest.raises(EdgeError, match="was started with limits"):  # another budget for the same study
        run_search(opts, fake_device(latency_limit=9.0))


def test_a_duplicate_parameter_set_fails_the_later_claim(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", None)
    study = optuna.create_study(storage=storage, study_name="dup")
    first, second = study.ask(), study.ask()
    claim_params(first, {"a": 1, "b": "x"})
    with pytest.raises(DuplicateParams, match=f"same parameters as trial {first.number}"):
        claim_params(second, {"b": "x", "a": 1})
    study.tell(first, 1.0)
    claim_params(study.ask(), {"a": 2, "b": "x"})


def test_a_duplicate_queues_a_point_nobody_holds(tmp_path):
    """TPE repeats its favourite point on a small discrete space: the duplicate's worker queues a
    free one for the next ask, once."""
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}", None), study_name="q")
    space = {"a": Param(choices=[1, 2, 3]), "b": Param(choices=["x"])}
    claim_params(study.ask(), {"a": 1, "b": "x"})
    claim_params(study.ask(), {"a": 3, "b": "x"})
    queue_untried(space, study, seed=0)
    queue_untried(space, study, seed=1)  # the free point waits already
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"a": 2, "b": "x"}]
    assert study.ask().suggest_categorical("a", [1, 2, 3]) == 2  # the next ask takes it
    queue_untried({"a": Param(low=0.0, high=1.0)}, study, seed=0)  # a range: the sampler draws on
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_another_setup_is_refused(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}", None), study_name="s")
    record_setup(study, {"epochs": 3, "data": "a.yaml"})
    record_setup(study, {"epochs": 3, "data": "a.yaml"})
    with pytest.raises(EdgeError, match="started with epochs = 3, this command gives 4"):
        record_setup(study, {"epochs": 4, "data": "a.yaml"})


def _running_with_last_checkpoint(db: str):
    if not os.path.exists(db.removeprefix("sqlite:///")):
        return None
    storage = open_storage(db, None)
    try:
        study = optuna.load_study(study_name=stage_name("edge-search", 1), storage=storage)
    except KeyError:
        return None
    for t in study.get_trials(states=(TrialState.RUNNING,)):
        run = t.user_attrs.get("run")
        if run and os.path.exists(os.path.join(run, "last.pt")):
            return t
    return None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the dead worker's trial is asked by hand
def test_a_stale_trial_is_failed_and_retried_in_the_same_study(tmp_path, tiny_data):
    """A worker that died mid-trial leaves it RUNNING with an old heartbeat: the next command fails it
    and runs it again with the same parameters, and the stage still ends with --trials trials."""
    opts = options(tmp_path, tiny_data, stage="1", heartbeat=1)
    opts.out.mkdir(parents=True)
    storage = open_storage(opts.storage_url(), 1)
    study = optuna.create_study(study_name=stage_name("edge-search", 1), storage=storage,
                                directions=["minimize", "minimize"],
                                sampler=optuna.samplers.GridSampler({"frontend.descriptors": ["logmel_iv", "spectral"]}))
    dead = study.ask()
    claim_params(dead, {"frontend.descriptors": dead.suggest_categorical("frontend.descriptors",
                                                                         ["logmel_iv", "spectral"])})
    storage.record_heartbeat(dead._trial_id)  # its last beat
    time.sleep(2.2)  # the grace period: two heartbeats
    run = run_search(opts, fake_device(latency_limit=9.0))
    trials = run.results[0].study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == dead.params
    assert sorted(t.params["frontend.descriptors"] for t in trials if t.state == TrialState.COMPLETE) == \
        ["logmel_iv", "spectral"]


@pytest.mark.slow
def test_a_killed_search_continues_the_study_and_its_trial(tmp_path, tiny_data):
    opts = options(tmp_path, tiny_data, stage="1", heartbeat=1, epochs=2)
    args = ["--data", str(opts.data), "--out", str(opts.out), "--config", opts.config, "--space", str(opts.space),
            "--target", "jetson-orin", "--budget", "realtime-100ms", "--stage", "1", "--trials", "2",
            "--epochs", "2", "--heartbeat", "1", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "at2seld_edge.cli", "search", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = opts.storage_url()
    try:
        deadline = time.monotonic() + 120
        while (killed := _running_with_last_checkpoint(db)) is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the search ended before a trial was killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    from at2seld_edge.deploy.search_cost import search_device

    time.sleep(2.5)  # past the grace period (two heartbeats): the killed trial is stale
    run = run_search(opts, search_device("jetson-orin", "realtime-100ms", "fp16"))
    trials = run.results[0].study.get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params and retried[0].user_attrs["run"] == killed.user_attrs["run"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    metrics = (tmp_path / "out" / "trials" / "stage1").glob("*/metrics.csv")
    assert all(m.read_text().count("\n") == 3 for m in metrics)  # header + epochs 1, 2: resumed, not restarted


@pytest.mark.parametrize("args, code, fragment", [
    (["--stage", "4"], 2, "--stage '4': expected '1', '2', '3' or 'all'"),
    (["--storage", "nosuchdb://x"], 1, "--storage nosuchdb://x: cannot open"),
])
def test_command_line_mistakes_are_one_line(tmp_path, tiny_data, args, code, fragment):
    r = edge("search", "--data", str(tiny_data.spec_path), "--target", "jetson-orin", "--budget", "realtime-100ms",
             "--out", str(tmp_path / "out"), *args)
    assert_user_error(r, code, fragment)


def test_a_schema_race_with_another_worker_is_retried(tmp_path, monkeypatch):
    """Two workers opening a new database both create Optuna's tables; the loser retries (the
    tables exist then) instead of stopping. Other database errors stay one line."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from at2seld_edge.search import study as study_mod

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise OperationalError("CREATE TABLE study_directions", {}, Exception("table study_directions already exists"))
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(study_mod.time, "sleep", lambda s: None)
    open_storage(f"sqlite:///{tmp_path / 's.db'}", None)
    assert len(calls) == 2
    assert study_mod._schema_race(IntegrityError("INSERT", {}, Exception('duplicate key value violates unique '
                                                                        'constraint "pg_type_typname_nsp_index"')))
    locked = OperationalError("SELECT", {}, Exception("database is locked"))
    assert not study_mod._schema_race(locked)
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda url, **kw: (_ for _ in ()).throw(locked))
    with pytest.raises(EdgeError, match="cannot open .OperationalError"):
        open_storage(f"sqlite:///{tmp_path / 't.db'}", None)


def test_a_damaged_or_foreign_search_db_is_one_line_naming_it(tmp_path):
    """A damaged page passed the open and failed mid-study with Optuna's StorageInternalError, a
    traceback; now an existing SQLite file is checked (PRAGMA quick_check) before Optuna opens it."""
    db = tmp_path / "search.db"
    storage = open_storage(f"sqlite:///{db}", None)
    study = optuna.create_study(study_name="s", storage=storage)
    for _ in range(30):
        study.tell(study.ask(), 1.0)
    storage.engine.dispose()
    with open(db, "r+b") as f:  # one page of the trials table overwritten, as a bad sector or a torn copy would
        f.seek(5 * 4096)
        f.write(b"\xff" * 4096)
    with pytest.raises(EdgeError, match=rf"^{db}: not a sound SQLite database \(.+\); move it away") as e:
        open_storage(f"sqlite:///{db}", None)
    assert "\n" not in str(e.value)
    db.write_bytes(os.urandom(8192))
    with pytest.raises(EdgeError, match=rf"^{db}: not a sound SQLite database \(file is not a database\)"):
        open_storage(f"sqlite:///{db}", None)
