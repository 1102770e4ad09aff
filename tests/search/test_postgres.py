"""Two `edge search` workers on one study through a real PostgreSQL server, started here in a
temporary data directory on 127.0.0.1 (tests/search/install_postgresql.sh installs the server)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from at2seld_edge.search.search import stage_name
from at2seld_edge.search.study import open_storage
from tests.search.conftest import tiny_files


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgresql_url():
    """A throw-away server: PostgreSQL refuses to run as root, so under root (CI) it runs as the
    `postgres` account (or `nobody`); trust authentication, loopback only, no Unix socket."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (tests/search/install_postgresql.sh)")
    root = Path(tempfile.mkdtemp(prefix="edge-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        owner = next((u for u in ("postgres", "nobody") if _exists(u)), None)
        if owner is None:
            pytest.skip("running as root and no unprivileged account to run PostgreSQL as")
        shutil.chown(root, owner)
        as_user = ["setpriv", f"--reuid={owner}", f"--regid={pwd.getpwnam(owner).pw_gid}", "--clear-groups", "--"]
    data, port = root / "data", _free_port()
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w"]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "edge", "--no-sync"],
                   check=True, capture_output=True, cwd=root)
    subprocess.run([*pg_ctl, "-l", str(root / "server.log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off", "start"],
                   check=True, capture_output=True, cwd=root)
    try:
        yield f"postgresql+psycopg2://edge@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def test_two_workers_share_one_study_without_duplicates(tmp_path, tiny_data, postgresql_url):
    cfg, space = tiny_files(tmp_path / "in")
    args = ["--data", str(tiny_data.spec_path), "--config", str(cfg), "--space", str(space), "--target", "jetson-orin",
            "--budget", "realtime-100ms", "--storage", postgresql_url, "--study", "pg", "--trials", "3",
            "--epochs", "1", "--pruner", "none", "--device", "cpu"]
    workers = [subprocess.Popen([sys.executable, "-m", "at2seld_edge.cli", "search", *args, "--out",
                                 str(tmp_path / f"worker{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
        assert f"storage: {postgresql_url}" in out
    storage = open_storage(postgresql_url, None)
    runs_by = set()
    for k, target in ((1, 2), (2, 3), (3, 3)):  # stage 1: its whole grid of 2
        study = optuna.load_study(study_name=stage_name("pg", k), storage=storage)
        done = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(done) == target
        keys = [tuple(sorted(t.params.items())) for t in done]
        assert len(set(keys)) == len(keys), keys
        assert study.user_attrs["chosen"]["trial"] in [t.number for t in done]
        runs_by |= {Path(t.user_attrs["run"]).parts[-4] for t in done}
    assert runs_by == {"worker0", "worker1"}  # both workers ran trials
    assert (tmp_path / "worker0" / "best.yaml").read_text() == (tmp_path / "worker1" / "best.yaml").read_text()
