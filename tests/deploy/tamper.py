"""The refusal corpus (tests/deploy/refusals.json): each way a tampered bundle is refused, as data
that this module applies for pytest and deploy/cpp/tests/test_bundle.cpp applies for ctest. The
corpus's `$comment` describes the operations; each is implemented here once, in the same way."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import zipfile
from pathlib import Path

import onnx
from numpy.lib import format as npy

import at2seld_edge
from at2seld_edge.deploy.bundle import MANIFEST
from at2seld_edge.errors import ErrorKind
from at2seld_edge.io import sha256_file

CORPUS = Path(__file__).with_name("refusals.json")
# refused_at -> (the line's prefix for bundle B, the error's kind)
STAGES = {
    "bundle": ("{b}: ", ErrorKind.INPUT),
    "manifest": ("{b}/" + MANIFEST + ": ", ErrorKind.INPUT),
    "integrity": ("{b}: bundle integrity check failed: ", ErrorKind.CHECK),
    "contract": ("{b}: the manifest does not describe its files: ", ErrorKind.CHECK),
}


def cases() -> list[dict]:
    return json.loads(CORPUS.read_text())["cases"]


def expected(case: dict, bundle: Path) -> tuple[str, ErrorKind]:
    """The start of the line (the whole line unless the case gives `message_begins`) and the kind."""
    prefix, kind = STAGES[case["refused_at"]]
    message = case.get("message", case.get("message_begins"))
    return prefix.replace("{b}", str(bundle)) + message.replace("{version}", at2seld_edge.__version__), kind


def apply(bundle: Path, tamper: list[dict]) -> None:
    for op in tamper:
        OPS[op["op"]](bundle, op)


# ---- manifest.json

def _read(b: Path) -> dict:
    return json.loads((b / MANIFEST).read_text())


def _write(b: Path, data: dict) -> None:
    (b / MANIFEST).write_text(json.dumps(data, indent=2))


def _at(data, path: list):
    for step in path:
        data = data[step]
    return data


def _edit(fn):
    def op(b: Path, o: dict) -> None:
        data = _read(b)
        fn(data, o)
        _write(b, data)
    return op


def _set(data, o):
    _at(data, o["at"][:-1])[o["at"][-1]] = o["value"] if "value" in o else copy.deepcopy(_at(data, o["value_from"]))


def _delete(data, o):
    del _at(data, o["at"][:-1])[o["at"][-1]]


def _append(data, o):
    _at(data, o["at"]).append(o["value"])


def _raw(b: Path, o: dict) -> None:
    """The top-level key's value replaced by raw JSON text (what no JSON writer would write)."""
    text = o["text"] if "text" in o else "".join(piece * times for piece, times in o["pieces"])
    data = _read(b)
    data[o["key"]] = "\0raw"
    (b / MANIFEST).write_text(json.dumps(data, indent=2).replace(json.dumps("\0raw"), text, 1))


# ---- files

def _write_file(b: Path, o: dict) -> None:
    (b / o["file"]).parent.mkdir(parents=True, exist_ok=True)
    (b / o["file"]).write_text(o["text"])


def _flip_byte(b: Path, o: dict) -> None:
    with open(b / o["file"], "r+b") as f:
        f.seek(o["offset"])
        byte = f.read(1)[0]
        f.seek(o["offset"])
        f.write(bytes([byte ^ 0xFF]))


def _engine(b: Path, o: dict) -> None:
    """A file that begins as a serialized plan does: the tag, and a size recorded at byte 16."""
    head = o["tag"].encode() + bytes(16 - len(o["tag"])) + o["recorded"].to_bytes(8, "little")
    (b / o["file"]).write_bytes(head.ljust(o["bytes"], b"\0"))


def _npz(b: Path, o: dict) -> None:
    """A .npz of zeros of the given shapes (4 bytes an element), members in the given order; with
    header_only, each member stops after its .npy header."""
    with zipfile.ZipFile(b / o["file"], "w") as z:
        for name, shape in o["arrays"]:
            member = io.BytesIO()
            npy.write_array_header_1_0(member, {"descr": o.get("descr", "<f4"), "fortran_order": False,
                                                "shape": tuple(shape)})
            if not o.get("header_only", False):
                member.write(bytes(4 * math.prod(shape)))
            z.writestr(f"{name}.npy", member.getvalue())


def _rehash(b: Path, o: dict) -> None:
    data = _read(b)
    p = b / o["file"]
    data["files"][o["file"]] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    _write(b, data)


# ---- ONNX graphs

def _graph_edit(fn):
    def op(b: Path, o: dict) -> None:
        model = onnx.load(str(b / o.get("from", o["file"])), load_external_data=False)
        fn(b, model, o)
        (b / o["file"]).write_bytes(model.SerializeToString())
    return op


def _custom_op(b, model, o):
    node = model.graph.node[o["node"]]
    node.domain, node.op_type, node.name = o["domain"], o["op_type"], o["name"]
    model.opset_import.add(domain=o["domain"], version=1)


def _rename_output(b, model, o):
    for node in model.graph.node:
        node.output[:] = [o["to"] if x == o["output"] else x for x in node.output]
    for out in model.graph.output:
        if out.name == o["output"]:
            out.name = o["to"]


def _externalize(b, model, o):
    """The first initializer's bytes moved to FILE.data, as onnx's external data writes them."""
    t = model.graph.initializer[0]
    (b / f"{o['file']}.data").write_bytes(t.raw_data)
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value=f"{o['file']}.data")
    t.ClearField("raw_data")


OPS = {
    "set": _edit(_set),
    "delete": _edit(_delete),
    "append": _edit(_append),
    "raw": _raw,
    "write": _write_file,
    "remove": lambda b, o: (b / o["file"]).unlink(),
    "copy": lambda b, o: shutil.copyfile(b / o["from"], b / o["file"]),
    "symlink": lambda b, o: os.symlink(o["target"], b / o["file"]),
    "flip_byte": _flip_byte,
    "engine": _engine,
    "npz": _npz,
    "rehash": _rehash,
    "custom_op": _graph_edit(_custom_op),
    "rename_output": _graph_edit(_rename_output),
    "externalize": _graph_edit(_externalize),
}
