"""Streaming bundles: the stream graph's state in the manifest, the lint covering it, its engine kept
for an RTX target, and what `edge bench` reports. A stream graph that disagrees with the manifest
is refused at load: the stream cases of the refusal corpus (tests/deploy/refusals.json)."""

from __future__ import annotations

import json
import re
import shutil

import onnx
import pytest

from at2seld_edge.deploy.bench import bench
from at2seld_edge.deploy.bundle import MANIFEST, load_bundle, write_manifest
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.deploy.runtime import RUNTIMES, SeldRuntime, stream_engine_session
from at2seld_edge.deploy.trt_check import check_bundle_graphs
from at2seld_edge.errors import EdgeError
from tests.deploy.test_engine import NEEDS_RTX


@pytest.fixture
def causal_copy(causal_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(causal_bundle, dst)
    return dst


def test_manifest_names_every_state_with_its_shape(causal_bundle):
    m = load_bundle(causal_bundle).manifest
    s = m.stream
    assert (s.graph, s.hop_samples, s.lookahead_samples) == ("stream.onnx", 2400, 0)
    proto = onnx.load(str(causal_bundle / s.graph))
    graph_inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert graph_inputs == {"audio": [1, 4, 2400], **{x.input: x.shape for x in s.states}}
    assert [o.name for o in proto.graph.output] == ["sed_logits", "doa", *(x.output for x in s.states)]
    names = [x.name for x in s.states]
    assert names[0] == "frontend.stft" and names[-1] == "smoother" and "track_transformer.valid" in names
    assert s.state_bytes == sum(4 * int(__import__("math").prod(x.shape)) for x in s.states) > 0
    assert "## Stream graph" in (causal_bundle / "lint.md").read_text()
    steps = {x["step"]: x["result"] for x in m.steps}
    assert "lint of stream.onnx: 0 errors" in steps["stream graph"]


def test_bench_reports_hop_latency_sound_to_detection_and_state_bytes(causal_bundle):
    rt = SeldRuntime(causal_bundle, "onnxruntime")
    report = bench(rt, iterations=4, warmup=1)
    assert report.stream_state_bytes == rt.manifest.stream.state_bytes
    assert report.sound_to_detection_ms == pytest.approx(report.stream_hop.median_ms)  # no lookahead
    assert "state carried between hops" in report.markdown()


@NEEDS_RTX
def test_an_rtx_target_keeps_the_stream_engine_beside_the_model_engine(causal_copy):
    manifest = json.loads((causal_copy / MANIFEST).read_text())
    check, engine = check_bundle_graphs(causal_copy, manifest, load_device("rtx-a2000"))
    assert {g.role: g.built for g in check.graphs}["stream"]
    assert engine["file"] == "model.engine" and manifest["stream"]["engine"] == "stream.engine"
    write_manifest(causal_copy, {**{k: v for k, v in manifest.items() if k != "files"}, "engine": engine})
    bundle = load_bundle(causal_copy)  # both engines hashed, the stream entry names its engine
    assert bundle.manifest.stream.engine == "stream.engine" and (causal_copy / "stream.engine").stat().st_size > 1e5
    with pytest.raises(EdgeError, match="no tensorrt engine for the stream graph"):  # built by TensorRT-RTX
        stream_engine_session(bundle, "tensorrt")
    with pytest.raises(EdgeError, match=re.escape(f"no tensorrt engine for {bundle.manifest.model} in this bundle "
                                                  "(a tensorrt-rtx engine)")):
        RUNTIMES.get("tensorrt")(bundle, bundle.manifest.model)


def test_streaming_builds_need_a_causal_model_and_default_to_the_causal_checkpoint():
    from at2seld_edge.deploy.build import BuildOptions, plan_build

    with pytest.raises(EdgeError, match="--streaming: untrained at2seld-nano is at2seld-nano, which is not causal") as e:
        plan_build(BuildOptions(target="jetson-orin", streaming=True, config="at2seld-nano"), say=lambda m: None)
    assert e.value.kind.name == "USAGE"
    plan = plan_build(BuildOptions(target="jetson-orin", streaming=True), say=lambda m: None)
    assert plan.source.endswith("at2seld-nano-causal-synth.pt") and plan.checkpoint.config.causal
