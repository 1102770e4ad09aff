"""The TensorRT parse-and-build step of `edge build`, and the FP16 graph for strongly typed builders.

Wherever a TensorRT-family builder imports (TensorRT-RTX installs from PyPI and builds without a
GPU, so CI has one), every graph of the bundle is parsed by NVIDIA's ONNX parser and built for
the bundle's optimization profile: the model graph, the FP32 graph an INT8 bundle also carries,
the FP16 graph and the stream graph. The result (builder, version, parse errors named by ONNX
node and module, network layers per module and type, build time) goes into the manifest and
`lint.md`; a graph the parser rejects fails the build, like a lint error. For a target whose
compute capability TensorRT-RTX builds for (RTX-class GPUs, A100), the model graph's engine is
kept as the bundle's `model.engine` (and the stream graph's as `stream.engine`). Where plain
TensorRT checks and the build's engine step will build the same graph right after (TensorRT and
a GPU here), the check only parses that graph and the engine step's build is recorded in its place
(`record_engine_build`): one build of it, not two.

TensorRT-RTX networks are strongly typed: precision comes from the graph's types, so FP16 needs
an FP16-typed graph. `write_fp16_graph` converts the FP32 graph with ONNX Runtime's float16
converter (inputs and outputs stay FP32) and checks it in ONNX Runtime against the golden
outputs under the FP16 tolerances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path, atomic_write_text, markdown_table
from at2seld_edge.model import OUTPUT_NAMES
from at2seld_edge.onnx_export import simplify_graph
from at2seld_edge.deploy.devices import DeviceSpec
from at2seld_edge.deploy.engine import (BUILDERS, EngineRequest, ProfileRange, audio_profile,
                                        available_builders, build_network, gpu_info, parse_onnx,
                                        rtx_compute_capabilities, tensorrt_module)
from at2seld_edge.deploy.verify import TOLERANCES, VerifyReport, compare, read_golden

FP16_GRAPH = "model.fp16.onnx"
FP16_PRECISIONS = ("fp16",)  # bundles that carry the FP16-typed graph
ENGINE_FILE = "model.engine"
STREAM_ENGINE, STREAM_ROLE = "stream.engine", "stream"
RTX = "tensorrt-rtx"
PARSE_AND_BUILD = "tensorrt parse and build"
Step = Callable[..., object]
Skip = Callable[[str, str], None]  # (step name, why it did not run)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphCheck(_Strict):
    """One graph through the parser and the builder."""

    file: str
    role: str  # engine graph, model, fp32, fp16, stream
    parsed: bool
    errors: list[str] = []
    layers: int = 0
    layers_by_module: dict[str, int] = {}
    layers_by_type: dict[str, int] = {}
    built: bool | None = None  # None: not tried (the parser rejected it, or the engine step is still to build it)
    build_seconds: float | None = None
    engine_bytes: int | None = None
    build_error: str | None = None


class TensorRTCheck(_Strict):
    """The parse-and-build step's record in the manifest."""

    builder: str
    version: str
    compute_capabilities: list[str] = []  # [] = the builder's default target
    graphs: list[GraphCheck]

    def summary(self) -> str:
        parsed = sum(g.parsed for g in self.graphs)
        built = sum(bool(g.built) for g in self.graphs)
        layers = ", ".join(f"{g.file} {g.layers}" for g in self.graphs)
        return (f"{self.builder} {self.version}: {parsed}/{len(self.graphs)} graphs parsed, {built} built; "
                f"network layers: {layers}")

    def markdown(self) -> str:
        targets = ", ".join(self.compute_capabilities) or "the builder's default"
        rows = [[g.file, g.role, "yes" if g.parsed else f"NO: {'; '.join(g.errors[:3])}", str(g.layers),
                 _built_cell(g), ", ".join(f"{m} {n}" for m, n in g.layers_by_module.items())] for g in self.graphs]
        types = [[g.file, ", ".join(f"{t} {n}" for t, n in g.layers_by_type.items())] for g in self.graphs]
        return (f"## {self.builder} {self.version}: parse and build (compute capability {targets})\n\n"
                + markdown_table(["graph", "role", "parsed", "network layers", "built", "layers by module"], rows)
                + "\n\nLayers by type:\n\n" + markdown_table(["graph", "layers by type"], types) + "\n")

    def raise_on_rejected(self) -> None:
        rejected = [g for g in self.graphs if not g.parsed]
        if rejected:
            shown = "; ".join(f"{g.file}: {'; '.join(g.errors[:4])}" for g in rejected)
            raise EdgeError(f"{self.builder} {self.version}'s ONNX parser rejects {shown}", ErrorKind.CHECK)


def _built_cell(g: GraphCheck) -> str:
    if g.built is None:
        return "-"
    if not g.built:
        return f"NO: {g.build_error}"
    return f"{g.engine_bytes / 1e6:.1f} MB in {g.build_seconds:.1f} s"


# ----------------------------------------------------------------------------- FP16 graph


def convert_fp16(src: Path, dst: Path) -> Path:
    """The FP32 graph with FP16 weights and activations (ONNX Runtime's float16 converter), its
    inputs and outputs kept FP32 so callers feed and read the same arrays, then simplified (which
    also puts the converter's input casts, appended last, in topological order); written
    atomically."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = simplify_graph(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise EdgeError(f"{dst}: the FP16 conversion fails onnx.checker: {e}", ErrorKind.CHECK) from None
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


def verify_graph(root: Path, graph: str, manifest: dict, precision: str) -> VerifyReport:
    """ONNX Runtime (CPU) on one graph of the bundle against its golden outputs, under
    `precision`'s tolerances."""
    from at2seld_edge.onnx_session import ort_session

    golden = read_golden(root / manifest["golden"])
    session = ort_session(root / graph)
    thresholds = np.asarray(manifest["thresholds"], np.float32)
    tol = TOLERANCES[precision]
    rows = []
    for i, audio in enumerate(golden["audio"]):
        got = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {manifest["inputs"][0]["name"]: audio[None]})))
        rows.append(compare({k: golden[k][i] for k in OUTPUT_NAMES}, {k: got[k][0] for k in OUTPUT_NAMES},
                            thresholds, tol, i))
    return VerifyReport(f"onnxruntime (CPU) on {graph}", precision, tol, rows)


def write_fp16_graph(work: Path, manifest: dict) -> VerifyReport:
    """Convert the bundle's FP32 graph to FP16 and check it against the golden outputs; records
    it as the manifest's `fp16_model`. Raises when ONNX Runtime does not reproduce them."""
    convert_fp16(work / "model.fp32.onnx", work / FP16_GRAPH)
    report = verify_graph(work, FP16_GRAPH, manifest, "fp16")
    if not report.passed:
        raise EdgeError(f"{work / FP16_GRAPH}: ONNX Runtime does not reproduce the golden outputs within the fp16 "
                        "tolerances: " + "; ".join(report.failures), ErrorKind.CHECK)
    manifest["fp16_model"] = FP16_GRAPH
    return report


# ----------------------------------------------------------------------------- parse and build


def bundle_graphs(manifest: dict) -> list[tuple[str, str]]:
    """(file, role) of every graph the bundle carries, the engine graph first."""
    graphs = [(engine_graph(manifest), "engine graph")]
    for file, role in ((manifest["model"], "model"), ("model.fp32.onnx", "fp32"),
                       (manifest.get("fp16_model"), "fp16")):
        if file and file not in (g for g, _ in graphs):
            graphs.append((file, role))
    stream = manifest.get("stream")
    if stream:
        graphs.append((stream["graph"], STREAM_ROLE))
    return graphs


def engine_graph(manifest: dict) -> str:
    """What a strongly typed builder builds the bundle's engine from: the FP16 graph of an FP16
    bundle, else the model graph (FP32, or INT8 Q/DQ)."""
    if manifest["precision"] == "fp16" and manifest.get("fp16_model"):
        return manifest["fp16_model"]
    return manifest["model"]


def graph_profile(role: str, manifest: dict) -> dict[str, ProfileRange]:
    """The optimization profile of a bundle graph: the bundle's window for the model graphs; none
    for the stream graph (every shape fixed)."""
    if role == STREAM_ROLE:
        return {}
    w = manifest["window"]
    return audio_profile(w["samples"], w["max_samples"], min_samples=w["min_samples"])


def rtx_target(device: DeviceSpec) -> str | None:
    """The device's compute capability where TensorRT-RTX builds engines for it (RTX-class GPUs,
    A100), else None (Jetson Orin's 8.7, H100's 9.0, CPUs)."""
    if device.kind != "gpu" or device.gpu is None:
        return None
    cc = device.gpu.compute_capability
    return cc if cc in rtx_compute_capabilities() else None


def _check_graph(work: Path, file: str, role: str, manifest: dict, builder: str,
                 request: EngineRequest, build: bool = True) -> tuple[GraphCheck, bytes | None]:
    parsed = parse_onnx(work / file, builder)
    check = GraphCheck(file=file, role=role, parsed=parsed.ok, errors=[str(e) for e in parsed.errors],
                       layers=parsed.layers, layers_by_module=parsed.by_module, layers_by_type=parsed.by_type)
    if not parsed.ok or not build:
        return check, None
    request.profile = graph_profile(role, manifest)
    try:
        built = build_network(parsed, request)
    except EdgeError as e:
        check.built, check.build_error = False, str(e)
        return check, None
    check.built, check.build_seconds, check.engine_bytes = True, round(built.seconds, 2), len(built.data)
    return check, built.data


def check_bundle_graphs(work: Path, manifest: dict, device: DeviceSpec, builder: str = RTX,
                        workspace_bytes: int = 1 << 30,
                        parse_only: str | None = None) -> tuple[TensorRTCheck, dict | None]:
    """Parse and build every graph of the bundle in `work` (`parse_only`, a file whose build comes
    later, is only parsed: its `built` stays None); for a TensorRT-RTX target, keep the engine
    graph's engine as `model.engine` and return its manifest entry too. The stream graph's
    engine is kept as `stream.engine` (and named in the manifest's stream entry) for a TensorRT-RTX
    target and wherever TensorRT itself builds (on the device, beside the build's own engine).
    A graph that does not build is recorded, not raised."""
    target = rtx_target(device) if builder == RTX else None
    ccs = [target] if target else []
    check = TensorRTCheck(builder=builder, version=tensorrt_module(builder).__version__, compute_capabilities=ccs,
                          graphs=[])
    engine = None
    for file, role in bundle_graphs(manifest):
        request = EngineRequest(manifest["precision"], workspace_bytes=workspace_bytes, compute_capabilities=tuple(ccs))
        graph, data = _check_graph(work, file, role, manifest, builder, request, build=file != parse_only)
        check.graphs.append(graph)
        if role == "engine graph" and data is not None and target:
            with atomic_path(work / ENGINE_FILE) as tmp:
                tmp.write_bytes(data)
            engine = {"file": ENGINE_FILE, "builder": builder, "tensorrt_version": check.version,
                      "gpu_name": device.description, "compute_capability": target, "compute_capabilities": ccs}
        if role == STREAM_ROLE and data is not None and (target or builder == "tensorrt"):
            with atomic_path(work / STREAM_ENGINE) as tmp:
                tmp.write_bytes(data)
            manifest["stream"]["engine"] = STREAM_ENGINE
    return check, engine


def here_builder() -> str | None:
    """The TensorRT-family builder that can build here: TensorRT-RTX (no GPU needed), else
    TensorRT where a GPU is visible, else None."""
    builders = available_builders()
    if RTX in builders:
        return RTX
    if "tensorrt" in builders and gpu_info() is not None:
        return "tensorrt"
    return None


def no_builder_reason() -> str:
    """Why `here_builder` found none, and what would give one."""
    trt = ("TensorRT sees no CUDA GPU" if "tensorrt" in available_builders()
           else f"TensorRT is not installed ({BUILDERS.get('tensorrt').install})")
    return (f"no TensorRT-family builder here: TensorRT-RTX is not installed ({BUILDERS.get(RTX).install}) and {trt}; "
            "the graphs were linted, not parsed or built by NVIDIA's builder")


def skipped_markdown(reason: str) -> str:
    return f"## {PARSE_AND_BUILD}: skipped\n\n{reason}.\n"


def tensorrt_steps(work: Path, manifest: dict, device: DeviceSpec, step: Step, skip: Skip,
                   keep_engine: bool = True, engine_builds: str | None = None) -> TensorRTCheck | None:
    """`edge build`'s steps after the numerical check: the FP16 graph of an FP16 bundle, then,
    where a TensorRT-family builder imports, the parse-and-build check of every graph (TensorRT-RTX
    first: it builds without a GPU); where none does, `skip` records the check as skipped with the
    reason, and lint.md says so. Records both in `manifest` (with the engine of a TensorRT-RTX
    target, unless not `keep_engine`) and appends the check to lint.md; raises when the parser
    rejects a graph or the engine graph or the stream graph does not build. `engine_builds`: the
    graph the build's engine step builds with TensorRT afterwards (None: no engine step); a plain
    TensorRT check only parses it, and `record_engine_build` records the engine step's build."""
    if manifest["precision"] in FP16_PRECISIONS:
        step("fp16 graph", lambda: write_fp16_graph(work, manifest),
             lambda r: f"{FP16_GRAPH} (ONNX Runtime's float16 converter, I/O FP32) vs golden: PASS "
                       f"(min SED agreement {min(x.decision_agreement for x in r.rows):.2%})")
    builder = here_builder()
    lint_md = work / "lint.md"
    if builder is None:
        reason = no_builder_reason()
        skip(PARSE_AND_BUILD, reason)
        atomic_write_text(lint_md, (lint_md.read_text() if lint_md.is_file() else "") + "\n" + skipped_markdown(reason))
        return None
    deferred = engine_builds if builder == "tensorrt" else None
    check, engine = step(PARSE_AND_BUILD,
                         lambda: check_bundle_graphs(work, manifest, device, builder, parse_only=deferred),
                         lambda r: r[0].summary() + (f"; {deferred} parsed only: the engine step builds it"
                                                     if deferred else ""))
    manifest["tensorrt_check"] = check.model_dump()
    if engine is not None and keep_engine:
        manifest["engine"] = engine
    elif engine is not None:
        (work / ENGINE_FILE).unlink()
    if not keep_engine and (manifest.get("stream") or {}).get("engine"):
        (work / manifest["stream"].pop("engine")).unlink()
    atomic_write_text(lint_md, (lint_md.read_text() if lint_md.is_file() else "") + "\n" + check.markdown())
    check.raise_on_rejected()
    for graph in check.graphs:
        if graph.role in ("engine graph", STREAM_ROLE) and not graph.built and graph.file != deferred:
            raise EdgeError(f"{work / graph.file}: {check.builder} {check.version} could not build it: "
                            f"{graph.build_error}", ErrorKind.CHECK)
    return check


def record_engine_build(work: Path, manifest: dict, file: str, seconds: float, engine_bytes: int) -> None:
    """The engine step's TensorRT build of `file`, which the check only parsed (`tensorrt_steps`'
    `engine_builds`), recorded as that graph's build in `manifest`'s check and in lint.md."""
    if not manifest.get("tensorrt_check"):
        return
    check = TensorRTCheck.model_validate(manifest["tensorrt_check"])
    graphs = [g for g in check.graphs if g.file == file and g.parsed and g.built is None]
    if check.builder != "tensorrt" or not graphs:
        return
    before = check.markdown()
    for g in graphs:
        g.built, g.build_seconds, g.engine_bytes = True, round(seconds, 2), engine_bytes
    manifest["tensorrt_check"] = check.model_dump()
    lint_md = work / "lint.md"
    if lint_md.is_file():
        atomic_write_text(lint_md, lint_md.read_text().replace(before, check.markdown()))
