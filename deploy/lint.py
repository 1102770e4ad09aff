"""TensorRT compatibility lint of an ONNX graph, for one TensorRT version, before anyone waits for
a build on the device: operators, the attribute and input restrictions of TensorRT's ONNX
parser, data types, opset and dynamic shapes; with `dla`, which layers a DLA core can run.

The tables follow onnx-tensorrt's `docs/operators.md` of the 8.5, 8.6, 10.3 and 10.15 release
branches (JetPack 5.1 ships 8.5, JetPack 6.0 8.6, JetPack 6.1/6.2 10.3); a version between two
tables is linted with the older one. DLA eligibility follows TensorRT's DLA supported-layers list
for Orin (DLA 2): convolutions, pooling, activations, scale and element-wise layers with static
shapes, in FP16 or INT8.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import onnx
from onnx import TensorProto

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text, markdown_table
from at2seld_edge.onnx_export import module_of_node

Severity = Literal["error", "warning", "info"]

_SEQUENCE = {"SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
             "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence"}
_NEVER = _SEQUENCE | {
    "Bernoulli", "BitShift", "Compress", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear", "MatMulInteger",
    "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional",
    "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "SoftmaxCrossEntropyLoss",
    "StringNormalizer", "TfIdfVectorizer", "Unique",
}
_OPSET18_PLUS_UNSUPPORTED = {"AffineGrid", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im",
                             "CenterCropPad", "ImageDecoder", "RegexFullMatch"}


@dataclass(frozen=True)
class TensorRTRules:
    version: tuple[int, int]
    max_opset: int
    unsupported: frozenset[str]
    native_int64: bool  # 8.x casts INT64 down to INT32
    quantized_types: frozenset[int]  # what Q/DQ may produce or consume


_INT8 = frozenset({TensorProto.INT8})
RULES: dict[tuple[int, int], TensorRTRules] = {
    (8, 5): TensorRTRules((8, 5), 17, frozenset(_NEVER | {"BlackmanWindow", "HammingWindow", "HannWindow", "Hardmax",
                                                          "IsInf", "LayerNormalization", "STFT"}), False, _INT8),
    (8, 6): TensorRTRules((8, 6), 17, frozenset(_NEVER | {"BlackmanWindow", "HammingWindow", "HannWindow", "Hardmax",
                                                          "IsInf", "STFT"}), False, _INT8),
    (10, 3): TensorRTRules((10, 3), 20, frozenset(_NEVER | _OPSET18_PLUS_UNSUPPORTED | {"STFT"}), True,
                           frozenset({TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4})),
    (10, 15): TensorRTRules((10, 15), 24, frozenset(_NEVER | _OPSET18_PLUS_UNSUPPORTED), True,
                            frozenset({TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4})),
}

# Inputs TensorRT needs as build-time constants: op -> (input index, what it is), from `since_opset`.
_CONSTANT_INPUTS = {
    "Slice": [(3, "axes")], "Squeeze": [(1, "axes")], "Unsqueeze": [(1, "axes")], "CumSum": [(1, "axis")],
    "TopK": [(1, "K")],
}
_REDUCE = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
           "ReduceProd", "ReduceSum", "ReduceSumSquare"}
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16}

# DLA (Orin): layer kinds it runs; everything else falls back to the GPU.
_DLA_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "PRelu", "Elu"}
_DLA_ELEMENTWISE = {"Add", "Sub", "Mul", "Max", "Min"}
_DLA_FREE = {"Identity", "Constant", "QuantizeLinear", "DequantizeLinear"}
_SHAPE_TYPES = {TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL}


def parse_version(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in str(text).split(".")[:2]]
    except ValueError:
        raise EdgeError(f"TensorRT version {text!r}: expected MAJOR.MINOR, e.g. 10.3", ErrorKind.USAGE) from None
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def rules_for(version: str) -> TensorRTRules:
    v = parse_version(version)
    known = sorted(RULES)
    older = [k for k in known if k <= v]
    if not older:
        raise EdgeError(f"TensorRT {version}: older than the oldest version linted "
                        f"({'.'.join(map(str, known[0]))}); JetPack 5.1 ships 8.5", ErrorKind.USAGE)
    return RULES[older[-1]]


@dataclass
class Finding:
    severity: Severity
    node: str
    op: str
    module: str
    message: str


@dataclass
class LintReport:
    model: str
    tensorrt: str
    rules: str
    opset: int
    findings: list[Finding] = field(default_factory=list)
    dla: dict | None = None  # eligible/fallback layers per module when linted for DLA

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict:
        return {"model": self.model, "tensorrt": self.tensorrt, "rules": self.rules, "opset": self.opset,
                "errors": len(self.errors), "findings": [asdict(f) for f in self.findings], "dla": self.dla}

    def summary(self) -> str:
        warnings = sum(f.severity == "warning" for f in self.findings)
        text = f"TensorRT {self.tensorrt} lint of {Path(self.model).name}: {len(self.errors)} errors, {warnings} warnings"
        if self.dla is not None:
            text += f"; DLA runs {self.dla['eligible']} of {self.dla['layers']} layers"
        return text

    def raise_on_errors(self) -> None:
        if self.errors:
            shown = "; ".join(f"node {f.node} ({f.op}, module {f.module}): {f.message}" for f in self.errors[:8])
            more = f" (and {len(self.errors) - 8} more)" if len(self.errors) > 8 else ""
            raise EdgeError(f"{self.model}: not buildable with TensorRT {self.tensorrt}: {shown}{more}", ErrorKind.CHECK)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def markdown(self) -> str:
        rows = [[f.severity, f.node, f.op, f.module, f.message] for f in self.findings if f.severity != "info"]
        text = f"{self.summary()}\n\n" + (markdown_table(["severity", "node", "op", "module", "problem"], rows)
                                          if rows else "No errors or warnings.") + "\n"
        return text


def _module(node: onnx.NodeProto) -> str:
    return module_of_node(node.name) or module_of_node("/" + (node.output[0] if node.output else "") + "/x") or "-"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def lint_onnx(path: str | Path, tensorrt: str, dla: bool = False, precision: str = "fp16") -> LintReport:
    """Lint `path` for TensorRT `tensorrt`; with `dla`, also say which layers a DLA core takes."""
    rules = rules_for(tensorrt)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise EdgeError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = LintReport(str(path), tensorrt, ".".join(map(str, rules.version)), opset)
    add = report.findings.append
    if opset > rules.max_opset:
        add(Finding("error", "(model)", "-", "-", f"opset {opset} is newer than TensorRT {tensorrt} parses "
                    f"(up to {rules.max_opset}); export with --opset {rules.max_opset}"))
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    types = _value_types(model)

    for inp in graph.input:
        if inp.name in constants:
            continue
        dims = inp.type.tensor_type.shape.dim if inp.type.tensor_type.HasField("shape") else None
        if dims is None:
            add(Finding("error", inp.name, "input", "-", "unknown rank: TensorRT needs the rank of every input"))
        elif any(not d.HasField("dim_value") for d in dims):
            dyn = [d.dim_param or "?" for d in dims if not d.HasField("dim_value")]
            add(Finding("info", inp.name, "input", "-", f"dynamic axes {', '.join(dyn)}: the engine needs an "
                        "optimization profile (min/opt/max) for them"))

    int64 = 0
    for node in graph.node:
        module = _module(node)
        if node.domain not in ("", "ai.onnx"):
            add(Finding("error", node.name, node.op_type, module, f"custom domain {node.domain!r}: needs a TensorRT "
                        "plugin, which this toolkit does not build"))
            continue
        if node.op_type in rules.unsupported:
            hint = " (export at opset 16 so torch writes it as primitive ops)" if node.op_type == "LayerNormalization" else ""
            add(Finding("error", node.name, node.op_type, module,
                        f"operator {node.op_type} is not supported by TensorRT {tensorrt}'s ONNX parser{hint}"))
            continue
        for idx, what in _CONSTANT_INPUTS.get(node.op_type, []):
            if len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
                add(Finding("error", node.name, node.op_type, module, f"input `{what}` must be a build-time constant"))
        if node.op_type in _REDUCE and rules.version >= (10, 0) and len(node.input) > 1 and node.input[1] \
                and node.input[1] not in constants:
            add(Finding("error", node.name, node.op_type, module, "input `axes` must be an initializer"))
        if node.op_type in ("AveragePool", "MaxPool", "LpPool"):
            k = _attr(node, "kernel_shape", [])
            if len(k) not in (2, 3):
                add(Finding("error", node.name, node.op_type, module, f"{len(k)}-D pooling: TensorRT pools 2-D or 3-D only"))
            if any(d != 1 for d in _attr(node, "dilations", []) or []):
                add(Finding("error", node.name, node.op_type, module, "pooling dilations must be all ones"))
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _lint_qdq(node, module, graph, rules, tensorrt, types, add)
        if node.op_type in ("GRU", "LSTM", "RNN") and _attr(node, "direction", b"forward") == b"bidirectional":
            acts = _attr(node, "activations")
            if acts and acts[: len(acts) // 2] != acts[len(acts) // 2:]:
                add(Finding("error", node.name, node.op_type, module,
                            "bidirectional RNN with different activations per direction"))
        if node.op_type == "LSTM" and (_attr(node, "input_forget", 0) or _attr(node, "layout", 0)):
            add(Finding("error", node.name, node.op_type, module, "LSTM `input_forget` and `layout` must be 0"))
        if node.op_type == "LayerNormalization" and any(o for o in node.output[1:]):
            add(Finding("error", node.name, node.op_type, module, "only the first output of LayerNormalization is supported"))
        if node.op_type == "Resize":
            mode = _attr(node, "mode", b"nearest").decode()
            if mode not in ("nearest", "linear"):
                add(Finding("error", node.name, node.op_type, module, f"Resize mode {mode!r}: nearest or linear only"))
        for name in list(node.input) + list(node.output):
            t = types.get(name)
            if t in (TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.INT4) and rules.version < (10, 0):
                add(Finding("error", node.name, node.op_type, module,
                            f"tensor {name} is {TensorProto.DataType.Name(t)}, which TensorRT {tensorrt} does not have"))
            elif t == TensorProto.DOUBLE:
                add(Finding("warning", node.name, node.op_type, module, f"tensor {name} is DOUBLE: TensorRT casts it to FLOAT"))
            elif t == TensorProto.UINT8 and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Cast"):
                add(Finding("error", node.name, node.op_type, module,
                            f"tensor {name} is UINT8, allowed only as a network input or output"))
            elif t == TensorProto.INT64 and not rules.native_int64:
                int64 += 1
    if int64:
        add(Finding("info", "(graph)", "-", "-", f"{int64} INT64 tensor uses (shape arithmetic): TensorRT "
                    f"{tensorrt} casts them to INT32"))
    if dla:
        report.dla = _dla_eligibility(graph, precision, constants, types, add)
    return report


def _lint_qdq(node, module, graph, rules: TensorRTRules, tensorrt: str, types: dict, add) -> None:
    inits = {i.name: i for i in graph.initializer}
    zp = node.input[2] if len(node.input) > 2 else ""
    if zp:
        if zp in inits:
            arr = onnx.numpy_helper.to_array(inits[zp])
            if arr.any():
                add(Finding("error", node.name, node.op_type, module, "zero point must be 0 (symmetric quantization)"))
            if inits[zp].data_type not in rules.quantized_types:
                add(Finding("error", node.name, node.op_type, module,
                            f"quantized type {TensorProto.DataType.Name(inits[zp].data_type)} is not supported by "
                            f"TensorRT {tensorrt} (INT8{', FP8, INT4' if rules.version >= (10, 0) else ''})"))
        else:
            add(Finding("error", node.name, node.op_type, module, "zero point must be a constant"))
    scale = node.input[1] if len(node.input) > 1 else ""
    if scale and scale not in inits and not any(n.op_type == "Constant" and scale in n.output for n in graph.node):
        add(Finding("error", node.name, node.op_type, module, "scale must be a build-time constant"))


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    out = {i.name: i.data_type for i in g.initializer}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        if v.type.HasField("tensor_type"):
            out[v.name] = v.type.tensor_type.elem_type
    return out


def _dla_eligibility(graph, precision: str, constants: set[str], types: dict[str, int], add) -> dict:
    """Per layer: can a DLA core run it? Layers that cannot run on the GPU (GPU fallback)."""
    static = all(d.HasField("dim_value") for i in graph.input if i.name not in constants
                 for d in i.type.tensor_type.shape.dim)
    inits = {i.name: i for i in graph.initializer}
    per_module: dict[str, dict[str, int]] = {}
    fallback: list[dict] = []
    layers = eligible = 0
    for node in graph.node:
        if node.op_type in _DLA_FREE or (node.output and types.get(node.output[0]) in _SHAPE_TYPES):
            continue  # Q/DQ fuse into their layers; integer shape arithmetic is folded at build time
        module = _module(node)
        reason = None
        if precision == "fp32":
            reason = "DLA runs FP16 or INT8 only"
        elif not static:
            reason = "dynamic input shape (DLA needs static shapes)"
        elif node.op_type == "Conv":
            w = inits.get(node.input[1]) if len(node.input) > 1 else None
            k = list(_attr(node, "kernel_shape", []) or (list(w.dims[2:]) if w is not None else []))
            s = list(_attr(node, "strides", []) or [1] * len(k))
            d = list(_attr(node, "dilations", []) or [1] * len(k))
            if len(k) != 2:
                reason = f"{len(k)}-D convolution (DLA: 2-D)"
            elif not all(1 <= x <= 32 for x in k) or not all(1 <= x <= 8 for x in s) or not all(1 <= x <= 32 for x in d):
                reason = f"kernel {k}, stride {s}, dilation {d} outside DLA's range (kernel 1-32, stride 1-8, dilation 1-32)"
        elif node.op_type in ("AveragePool", "MaxPool"):
            k = list(_attr(node, "kernel_shape", []))
            s = list(_attr(node, "strides", []) or k)
            if len(k) != 2 or not all(1 <= x <= 8 for x in k) or not all(1 <= x <= 16 for x in s):
                reason = f"pool window {k}, stride {s} outside DLA's range (window 1-8, stride 1-16)"
        elif node.op_type == "BatchNormalization" or node.op_type in _DLA_ACTIVATIONS or node.op_type in _DLA_ELEMENTWISE:
            pass
        elif node.op_type == "Concat":
            if _attr(node, "axis", 0) != 1:
                reason = "Concat off the channel axis"
        else:
            reason = f"{node.op_type} has no DLA implementation"
        layers += 1
        row = per_module.setdefault(module, {"eligible": 0, "gpu_fallback": 0})
        if reason is None:
            eligible += 1
            row["eligible"] += 1
        else:
            row["gpu_fallback"] += 1
            fallback.append({"node": node.name, "op": node.op_type, "module": module, "reason": reason})
    if eligible == 0:
        add(Finding("warning", "(graph)", "-", "-", "no layer can run on the DLA: every layer falls back to the GPU"))
    return {"layers": layers, "eligible": eligible, "per_module": per_module, "gpu_fallback": fallback}
