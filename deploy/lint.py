"""TensorRT compatibility lint of an ONNX graph, for one TensorRT version, before anyone waits for
a build on the device: operators, the attribute and input restrictions of TensorRT's ONNX
parser, data types, opset and dynamic shapes; with `dla`, which layers a DLA core can run.

The tables follow onnx-tensorrt's `docs/operators.md` of the 8.5, 8.6, 10.3 and 10.15 release
branches (JetPack 5.1 ships 8.5, JetPack 6.0 8.6, JetPack 6.1/6.2 10.3); a version between two
tables is linted with the older one. Per version, `RULES` holds the unsupported operators, the
opset and the quantized types; the operators' restrictions are the table `OP_RULES`, each rule
with the versions it applies to, so a new TensorRT version is a data change. Both are checked
against TensorRT-RTX's parser by tests/deploy/test_lint_corpus.py, which explains each case where
they differ. DLA eligibility follows TensorRT's DLA supported-layers list
for Orin (DLA 2): convolutions, pooling, activations, scale and element-wise layers with static
shapes, in FP16 or INT8.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

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

_REDUCE = frozenset({"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
                     "ReduceProd", "ReduceSum", "ReduceSumSquare"})

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
    ctx = _Context(graph, rules, tensorrt, _value_types(model))
    _lint_inputs(graph, ctx.constants, add)
    int64 = 0
    for node in graph.node:
        module = _module(node)
        for severity, message in _node_problems(node, ctx):
            add(Finding(severity, node.name, node.op_type, module, message))
        int64 += sum(ctx.types.get(n) == TensorProto.INT64 for n in (*node.input, *node.output)) \
            if not rules.native_int64 else 0
    if int64:
        add(Finding("info", "(graph)", "-", "-", f"{int64} INT64 tensor uses (shape arithmetic): TensorRT "
                    f"{tensorrt} casts them to INT32"))
    if dla:
        report.dla = _dla_eligibility(graph, precision, ctx.constants, ctx.types, add)
    return report


def _lint_inputs(graph: onnx.GraphProto, constants: set[str], add) -> None:
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


# ----------------------------------------------------------------------------- per-operator rules


@dataclass
class _Context:
    """What a rule may read besides its node."""

    graph: onnx.GraphProto
    rules: TensorRTRules
    tensorrt: str
    types: dict[str, int]
    constants: set[str] = field(default_factory=set)
    inits: dict[str, onnx.TensorProto] = field(default_factory=dict)

    def __post_init__(self):
        self.inits = {i.name: i for i in self.graph.initializer}
        self.constants = set(self.inits) | {o for n in self.graph.node if n.op_type == "Constant" for o in n.output}

    def constant(self, node: onnx.NodeProto, index: int) -> bool:
        """Input `index` is absent or a build-time constant."""
        return len(node.input) <= index or not node.input[index] or node.input[index] in self.constants


Check = Callable[[onnx.NodeProto, _Context], Iterable[str]]


@dataclass(frozen=True)
class OpRule:
    """One restriction of TensorRT's ONNX parser on some operators, for the TensorRT versions in
    [since, until): `check` yields what is wrong with a node (nothing when it is fine)."""

    ops: frozenset[str]
    check: Check
    since: tuple[int, int] = (0, 0)
    until: tuple[int, int] = (99, 0)

    def applies(self, op: str, version: tuple[int, int]) -> bool:
        return op in self.ops and self.since <= version < self.until


def _constant_input(index: int, what: str, wording: str = "a build-time constant") -> Check:
    def check(node, ctx):
        if not ctx.constant(node, index):
            yield f"input `{what}` must be {wording}"
    return check


def _pooling(node, ctx):
    k = _attr(node, "kernel_shape", [])
    if len(k) not in (1, 2, 3):  # 1-D pooling is expanded to 2-D by the parser (since 8.5)
        yield f"{len(k)}-D pooling: TensorRT pools 1-D, 2-D or 3-D only"
    if any(d != 1 for d in _attr(node, "dilations", []) or []):
        yield "pooling dilations must be all ones"


def _rnn_directions(node, ctx):
    acts = _attr(node, "activations")
    if _attr(node, "direction", b"forward") == b"bidirectional" and acts and acts[: len(acts) // 2] != acts[len(acts) // 2:]:
        yield "bidirectional RNN with different activations per direction"


def _attribute_zero(name: str) -> Check:
    def check(node, ctx):
        if _attr(node, name, 0):
            yield f"LSTM `{name}` must be 0"
    return check


def _layernorm_outputs(node, ctx):
    if any(o for o in node.output[1:]):
        yield "only the first output of LayerNormalization is supported"


def _resize_mode(node, ctx):
    mode = _attr(node, "mode", b"nearest").decode()
    if mode not in ("nearest", "linear"):
        yield f"Resize mode {mode!r}: nearest or linear only"


def _qdq(node, ctx):
    zp = node.input[2] if len(node.input) > 2 else ""
    if zp and zp in ctx.inits:
        if onnx.numpy_helper.to_array(ctx.inits[zp]).any():
            yield "zero point must be 0 (symmetric quantization)"
        if ctx.inits[zp].data_type not in ctx.rules.quantized_types:
            newer = ", FP8, INT4" if ctx.rules.version >= (10, 0) else ""
            yield (f"quantized type {TensorProto.DataType.Name(ctx.inits[zp].data_type)} is not supported by "
                   f"TensorRT {ctx.tensorrt} (INT8{newer})")
    elif zp:
        yield "zero point must be a constant"
    if not ctx.constant(node, 1):
        yield "scale must be a build-time constant"


def _unsupported(node, ctx):
    if node.domain not in ("", "ai.onnx"):
        yield f"custom domain {node.domain!r}: needs a TensorRT plugin, which this toolkit does not build"
    elif node.op_type in ctx.rules.unsupported:
        hint = " (export at opset 16 so torch writes it as primitive ops)" if node.op_type == "LayerNormalization" else ""
        yield f"operator {node.op_type} is not supported by TensorRT {ctx.tensorrt}'s ONNX parser{hint}"


def _ops(*names: str) -> frozenset[str]:
    return frozenset(names)


# onnx-tensorrt's docs/operators.md per release branch, corrected where the corpus in
# tests/deploy/test_lint_corpus.py found the parser more permissive (1-D pooling, TopK's K).
OP_RULES: tuple[OpRule, ...] = (
    OpRule(_ops("Slice"), _constant_input(3, "axes")),
    OpRule(_ops("Squeeze", "Unsqueeze"), _constant_input(1, "axes")),
    OpRule(_ops("CumSum"), _constant_input(1, "axis")),
    OpRule(_ops("TopK"), _constant_input(1, "K"), until=(8, 6)),
    OpRule(_REDUCE, _constant_input(1, "axes", "an initializer"), since=(10, 0)),
    OpRule(_ops("AveragePool", "MaxPool", "LpPool"), _pooling),
    OpRule(_ops("QuantizeLinear", "DequantizeLinear"), _qdq),
    OpRule(_ops("GRU", "LSTM", "RNN"), _rnn_directions),
    OpRule(_ops("LSTM"), _attribute_zero("input_forget")),
    OpRule(_ops("LSTM"), _attribute_zero("layout")),
    OpRule(_ops("LayerNormalization"), _layernorm_outputs),
    OpRule(_ops("Resize"), _resize_mode),
)


def _tensor_types(node, ctx) -> Iterable[tuple[Severity, str]]:
    """Data types: the same for every operator."""
    for name in (*node.input, *node.output):
        t = ctx.types.get(name)
        if t in (TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.INT4) and ctx.rules.version < (10, 0):
            yield "error", f"tensor {name} is {TensorProto.DataType.Name(t)}, which TensorRT {ctx.tensorrt} does not have"
        elif t == TensorProto.DOUBLE:
            yield "warning", f"tensor {name} is DOUBLE: TensorRT casts it to FLOAT"
        elif t == TensorProto.UINT8 and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            yield "error", f"tensor {name} is UINT8, allowed only as a network input or output"


def _node_problems(node: onnx.NodeProto, ctx: _Context) -> list[tuple[Severity, str]]:
    """(severity, message) of everything wrong with one node: an unsupported operator stops
    there; else every rule of the table that applies, then the data types."""
    unsupported = [("error", m) for m in _unsupported(node, ctx)]
    if unsupported:
        return unsupported
    problems = [("error", m) for rule in OP_RULES if rule.applies(node.op_type, ctx.rules.version)
                for m in rule.check(node, ctx)]
    return problems + list(_tensor_types(node, ctx))


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
