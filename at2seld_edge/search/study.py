"""Optuna plumbing shared by `edge search` and `edge ablate`: storage, the worker loop, duplicate
guard, pruning on a companion study, the record of a study's setup.

Storage is any SQLAlchemy URL (an SQLite file by default; PostgreSQL for many workers on many
machines). Every trial runs with Optuna's heartbeat: a trial whose process was killed stops beating,
is failed by the next worker loop after the grace period, and RetryHeartbeatStaleTrialCallback
queues it again with the same parameters (its run folder, keyed by the parameters, resumes).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from at2seld_edge.errors import EdgeError
from at2seld_edge.training.trainer import Reporter

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED)
KEY_ATTR = "params_key"


def quiet_optuna() -> None:
    """Optuna's own lines (a trial failed as a duplicate is logged with its traceback) and its
    experimental-feature warnings stay out of the command's output; the command says what happened."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="The constraint value is ignored", category=UserWarning)


def open_storage(url: str, heartbeat_s: int | None) -> optuna.storages.RDBStorage:
    """The storage at `url`, with heartbeats every `heartbeat_s` seconds (None: without, for
    studies run by ask and tell, which never beat)."""
    quiet_optuna()
    check_sqlite_file(url)
    beats = {} if heartbeat_s is None else {
        "heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
        "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **beats)
        except ImportError as e:
            raise EdgeError(f"--storage {url}: its database driver is not installed ({e}); PostgreSQL needs "
                            "psycopg2 (the `search` extra has psycopg2-binary)") from None
        except Exception as e:  # SQLAlchemy: malformed URL, server down, refused login
            if _schema_race(e) and attempt < SCHEMA_RACE_RETRIES:
                time.sleep(0.2 * (attempt + 1))  # another worker is creating the tables: they exist next time
                continue
            raise EdgeError(f"--storage {url}: cannot open ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    raise AssertionError("unreachable")


SCHEMA_RACE_RETRIES = 5


def check_sqlite_file(url: str) -> None:
    """An existing SQLite storage must be a sound SQLite database: a damaged page would pass the
    open and fail mid-study with a traceback from inside Optuna; a file that is not SQLite at all
    fails here too, in one line."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL: RDBStorage says so
        return
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:" or not Path(path).exists():
        return
    try:
        with closing(sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, timeout=30)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.OperationalError as e:  # busy or locked: another worker is writing; the file itself is fine
        if "locked" in str(e) or "busy" in str(e):
            return
        problems = [str(e)]
    except sqlite3.Error as e:
        problems = [str(e)]
    if problems != ["ok"]:
        first = " ".join(problems[0].replace("*** in database main ***", "").split())
        raise EdgeError(f"{path}: not a sound SQLite database ({first}); move it away to start the study afresh, "
                        "or give another --out or --storage")


def _schema_race(e: Exception) -> bool:
    """Workers that open a new database at once all create Optuna's tables; the losers get a
    unique violation from PostgreSQL's catalogue, or "table ... already exists" (SQLite too)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    return isinstance(e, (IntegrityError, OperationalError, ProgrammingError)) and (
        "already exists" in str(e) or "duplicate key" in str(e))


def params_key(params: dict[str, Any]) -> str:
    """A short hash of the parameter values: the duplicate guard's and the run folder's key."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


class DuplicateParams(Exception):
    """This trial's parameters are another live trial's: it fails, the sampler draws again."""


class SurplusTrial(Exception):
    """Enough trials finished or run elsewhere meanwhile: this one fails without training."""


def claim_params(trial: optuna.Trial, params: dict[str, Any]) -> str:
    """Claim the parameter set, then look: if any other live trial holds the same claim, fail. Two
    workers racing for one set can both fail (the sampler draws again), never both run: each
    writes its claim before it reads the others'."""
    key = params_key(params)
    trial.set_user_attr(KEY_ATTR, key)
    others = [t.number for t in trial.study.get_trials(deepcopy=False, states=LIVE)
              if t.number != trial.number and t.user_attrs.get(KEY_ATTR) == key]
    if others:
        raise DuplicateParams(f"trial {trial.number}: same parameters as trial {others[0]}")
    return key


@dataclass
class WorkerLoop:
    """Runs trials one at a time until `target` trials of the study finished (this worker's and
    others'), then waits for the others' running trials: the stage is decided on all of them."""

    study: optuna.Study
    target: int
    size: int | None = None  # distinct parameter sets in the space, where it has no ranges
    poll_s: float = 5.0
    max_failures: int = 50

    def run(self, objective: Callable[[optuna.Trial], Any], say: Callable[[str], None]) -> None:
        failures, waited = 0, False
        while True:
            optuna.storages.fail_stale_trials(self.study)
            trials = self.study.get_trials(deepcopy=False)
            states = [t.state for t in trials]
            finished, running = sum(counts(t) for t in trials), states.count(TrialState.RUNNING)
            if finished >= self.target and not running:
                return
            tried = {t.user_attrs.get(KEY_ATTR) for t in trials if t.state in FINISHED}
            if not running and (len(tried) - finished > 10 * self.target or len(tried) == self.size):
                say(f"{self.study.study_name}: {len(tried) - finished} proposal(s) over budget and skipped, "
                    f"{len(tried)} tried{' (the whole space)' if len(tried) == self.size else ''}; stopping with "
                    f"{finished} trained")
                return
            if finished + running < self.target or TrialState.WAITING in states:
                before = states.count(TrialState.FAIL)
                self.study.optimize(objective, n_trials=1, catch=(DuplicateParams, SurplusTrial),
                                    gc_after_trial=False, show_progress_bar=False)
                failures += self._failed() - before
                if failures > self.max_failures:
                    raise EdgeError(f"study {self.study.study_name}: {failures} trials failed (duplicate parameters or "
                                    "errors); the space may hold fewer distinct points than --trials")
            else:
                if not waited:
                    say(f"{self.study.study_name}: waiting for {running} trial(s) of other workers")
                    waited = True
                time.sleep(self.poll_s)

    def _failed(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))

    def check_surplus(self, trial: optuna.Trial) -> None:
        """Inside the objective: the finished trials plus the running ones started before this one."""
        busy = [t for t in trial.study.get_trials(deepcopy=False)
                if counts(t) or (t.state == TrialState.RUNNING and t.number < trial.number)]
        if len(busy) >= self.target:
            raise SurplusTrial(f"trial {trial.number}: {self.target} trials already done or running")


SKIPPED_ATTR = "skipped"


def counts(t: FrozenTrial) -> bool:
    """A finished trial that counts towards --trials: not one skipped untrained (over budget)."""
    return t.state in FINISHED and SKIPPED_ATTR not in t.user_attrs


class EpochPruner:
    """Per-epoch pruning for a multi-objective study: Optuna's pruners are single-objective
    (Trial.report refuses multi-objective studies), so each trial has a twin in a companion study
    `NAME:pruning` (minimize the validation SELD score) that reports every epoch and asks the
    pruner; the twins of all workers are in the shared storage, so the pruner sees every curve."""

    def __init__(self, url: str, name: str, pruner: optuna.pruners.BasePruner):
        self.study = optuna.create_study(study_name=f"{name}:pruning", storage=open_storage(url, None),
                                         direction="minimize", pruner=pruner, load_if_exists=True)

    def reporter(self, trial: optuna.Trial, base: Reporter | None = None) -> tuple[Reporter, optuna.Trial]:
        twin = self.study.ask()
        twin.set_user_attr("trial", trial.number)
        curve: list[float] = []
        base = base or Reporter()

        def epoch_done(row: dict[str, float], improved: bool) -> None:
            base.epoch_done(row, improved)
            curve.append(float(row["val_SELD"]))
            trial.set_user_attr("val_SELD_by_epoch", curve)
            twin.report(row["val_SELD"], step=int(row["epoch"]))
            if twin.should_prune():
                self.study.tell(twin, state=TrialState.PRUNED)
                raise optuna.TrialPruned(f"validation SELD {row['val_SELD']:.3f} after epoch {row['epoch']}")

        return Reporter(base.start_batches, base.batch_done, epoch_done, base.message), twin

    def finish(self, twin: optuna.Trial, value: float | None) -> None:
        """COMPLETE with the trial's score, or FAIL; a twin already told (pruned) is left alone."""
        try:
            self.study.tell(twin, value, state=TrialState.COMPLETE if value is not None else TrialState.FAIL)
        except (RuntimeError, ValueError):
            pass  # told already (pruned)


PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
    "none": lambda: optuna.pruners.NopPruner(),
}


def record_setup(study: optuna.Study, setup: dict[str, Any]) -> None:
    """The first worker records what the study was started with; a later command (a rerun, another
    worker) must say the same, or it would mix trials of two different questions."""
    setup = json.loads(json.dumps(setup, default=str))
    old = study.user_attrs.get("setup")
    if old is None:
        study.set_user_attr("setup", setup)
        return
    differ = [k for k in sorted(set(old) | set(setup)) if old.get(k) != setup.get(k)]
    if differ:
        k = differ[0]
        raise EdgeError(f"study {study.study_name} was started with {k} = {_short(old.get(k))}, this command gives "
                        f"{_short(setup.get(k))} ({len(differ)} difference(s): {', '.join(differ)}); use the same "
                        "options or another --study")


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def existing_study(storage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None

