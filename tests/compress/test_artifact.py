"""The compression manifest `edge build --compressed` reads is checked like any input: the files it
names are files of its folder, its options validate, and the source it points at is the one hashed."""

from __future__ import annotations

import json

import pytest

from at2seld_edge.compress.pipeline import read_compressed
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import sha256_file


def write_folder(tmp_path, **fields):
    """A compression folder holding a pruned checkpoint and its FP32 graph, manifest fields overridable."""
    folder = tmp_path / "c"
    folder.mkdir()
    for name in ("pruned.pt", "model.fp32.onnx"):
        (folder / name).write_bytes(name.encode())
    manifest = {"format": "at2seld-edge.compression/1", "toolkit_version": "0.1.0", "created_utc": "now",
                "source_checkpoint": str(tmp_path / "source.pt"), "source_checkpoint_sha256": None,
                "data": str(tmp_path / "dataset.yaml"), "classes": ["a"], "options": {"int8": False},
                "checkpoint": "pruned.pt", "fp32_model": "model.fp32.onnx",
                "files": {n: sha256_file(folder / n) for n in ("pruned.pt", "model.fp32.onnx")}}
    manifest.update(fields)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_well_formed_folder_lends_its_checkpoint(tmp_path):
    folder = write_folder(tmp_path)
    assert read_compressed(folder).checkpoint == folder / "pruned.pt"


@pytest.mark.parametrize("name", ["../outside.pt", "/etc/outside.pt", "sub/../../outside.pt", "./pruned.pt"])
def test_a_checkpoint_named_outside_the_folder_is_refused(tmp_path, name):
    """Each was loaded from where the manifest pointed, its hash (listed beside it) matching."""
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"someone else's weights")
    folder = write_folder(tmp_path, checkpoint=name, files={name: sha256_file(outside)})
    with pytest.raises(EdgeError) as e:
        read_compressed(folder)
    assert str(e.value).startswith(f"{folder / 'manifest.json'}: key `checkpoint`: {name!r} is not a file of this "
                                   "folder") and "\n" not in str(e.value)


def test_tampered_options_are_one_line_not_a_validation_traceback(tmp_path):
    folder = write_folder(tmp_path, options={"calib_clips": "many"})
    with pytest.raises(EdgeError, match=r"c/manifest.json: options: --calib-clips 'many': Input should be a valid "
                                        "integer"):
        read_compressed(folder)


def test_without_pruning_the_source_checkpoint_must_be_the_one_compressed(tmp_path):
    source = tmp_path / "source.pt"
    source.write_bytes(b"the trained weights")
    folder = write_folder(tmp_path, checkpoint=None, source_checkpoint_sha256=sha256_file(source))
    assert read_compressed(folder).checkpoint == source
    source.write_bytes(b"other weights since")
    with pytest.raises(EdgeError, match="source.pt: changed since edge compress made .*c from it"):
        read_compressed(folder)
