"""A bundle is untrusted input: every way its files or manifest can lie is refused at load, with
one line naming the file and the problem, before anything in it runs.

The cases are the refusal corpus (tests/deploy/refusals.json), which the C++ suite runs too
(deploy/cpp/tests/test_bundle.cpp): one list, the same line from both loaders. What is left here
is Python's own: the CLI's exit codes and the library's manifest writer."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from at2seld_edge.deploy.bundle import MANIFEST, load_bundle, write_manifest
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import sha256_file
from tests.deploy import tamper
from tests.test_cli import assert_user_error, edge

FIXTURES = {"fp32": "fp32_bundle", "int8": "int8_bundle", "stream": "causal_bundle"}  # the corpus's -> conftest's


@pytest.fixture
def bundle(fp32_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(fp32_bundle, dst)
    return dst


def manifest(b) -> dict:
    return json.loads((b / MANIFEST).read_text())


def rewrite(b, **changes):
    """Edit manifest fields and re-hash the files: what someone who edits a bundle would do."""
    data = {k: v for k, v in manifest(b).items() if k != "files"}
    data.update(changes)
    (b / MANIFEST).write_text(json.dumps({**data, "files": {}}))
    files = {}
    for p in sorted(b.rglob("*")):
        rel = p.relative_to(b).as_posix()
        if rel != MANIFEST and (p.is_file() or p.is_symlink()):
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (b / MANIFEST).write_text(json.dumps({**data, "files": files}))


def refused(b, *fragments):
    with pytest.raises(EdgeError) as e:
        load_bundle(b)
    for f in fragments:
        assert f in str(e.value), str(e.value)
    return e.value


@pytest.mark.parametrize("case", tamper.cases(), ids=lambda c: c["id"])
def test_each_case_of_the_refusal_corpus(case, request, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(request.getfixturevalue(FIXTURES[case["fixture"]]), b, symlinks=True)
    tamper.apply(b, case["tamper"])
    if case.get("accepted"):
        load_bundle(b)
        return
    want, kind = tamper.expected(case, b)
    e = refused(b)
    got = str(e)
    assert "\n" not in got
    assert (got == want if "message" in case else got.startswith(want)), f"\n got: {got}\nwant: {want}"
    assert e.kind == kind


def test_the_corpus_is_one_list_of_known_operations():
    """What the C++ suite relies on too: unique ids it can name tests by, known fixtures, stages and
    operations, one expectation per case."""
    cases = tamper.cases()
    assert len({c["id"] for c in cases}) == len(cases)
    for c in cases:
        assert re.fullmatch(r"[a-z0-9_]+", c["id"]) and c["fixture"] in FIXTURES, c["id"]
        assert c.get("accepted") or (c["refused_at"] in tamper.STAGES
                                     and ("message" in c) != ("message_begins" in c)), c["id"]
        assert all(op["op"] in tamper.OPS for op in c["tamper"]), c["id"]


def _case(case_id: str) -> dict:
    return next(c for c in tamper.cases() if c["id"] == case_id)


@pytest.mark.parametrize("case_id, command", [
    ("hop_zero", ["verify"]), ("hop_zero", ["bench", "--iterations", "2"]), ("nesting_10000_deep", ["verify"]),
    ("int_5000_digits", ["run", "x.wav"]), ("custom_op", ["verify"]),
])
def test_refusals_exit_1_in_the_cli_in_one_line_never_2_or_a_traceback(bundle, case_id, command):
    case = _case(case_id)
    tamper.apply(bundle, case["tamper"])
    args = [str(bundle / a) if a.endswith(".wav") else a for a in command]
    assert_user_error(edge(*args, "--bundle", str(bundle)), 1, case["message"])


def test_rewriting_the_manifest_through_the_library_still_loads(bundle):
    data = {k: v for k, v in manifest(bundle).items() if k != "files"}
    write_manifest(bundle, data)
    assert load_bundle(bundle).manifest.precision == "fp32"
