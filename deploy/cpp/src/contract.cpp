#include "contract.hpp"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "limits.hpp"
#include "npz.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace at2seld::detail {
namespace {

bool contains(const std::vector<std::string>& values, const std::string& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

std::string py_list(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + py_repr(names[i]);
  return out + "]";
}

std::string dim_repr(const Dim& d) { return d.size < 0 ? py_repr(d.symbol) : std::to_string(d.size); }

// `fixed`: every axis must be fixed in the graph (the stream graph).
std::vector<std::string> io_problems(const std::string& graph, const std::string& kind,
                                     const std::vector<const onnx::ValueInfoProto*>& values,
                                     const std::vector<TensorSpec>& specs, bool fixed = false) {
  std::vector<std::string> got, want;
  for (const auto* v : values) got.push_back(v->name());
  for (const TensorSpec& s : specs) want.push_back(s.name);
  if (got != want) return {graph + ": " + kind + "s " + py_list(got) + ", the manifest says " + py_list(want)};
  std::vector<std::string> problems;
  for (size_t k = 0; k < values.size(); ++k) {
    const auto& t = values[k]->type().tensor_type();
    const TensorSpec& spec = specs[k];
    const std::string& name = values[k]->name();
    if (t.elem_type() != limits().onnx_dtypes.at(spec.dtype)) {
      problems.push_back(format("%s: %s %s has element type %d, the manifest says %s", graph.c_str(), kind.c_str(),
                                name.c_str(), t.elem_type(), spec.dtype.c_str()));
    }
    if (t.shape().dim_size() != static_cast<int>(spec.shape.size())) {
      problems.push_back(format("%s: %s %s has rank %d, the manifest says %zu", graph.c_str(), kind.c_str(),
                                name.c_str(), t.shape().dim_size(), spec.shape.size()));
      continue;
    }
    for (int i = 0; i < t.shape().dim_size(); ++i) {
      const auto& d = t.shape().dim(i);
      const Dim& s = spec.shape[static_cast<size_t>(i)];
      if (!d.has_dim_value() && fixed) {
        problems.push_back(format("%s: %s %s axis %d is dynamic in the graph, %s in the manifest", graph.c_str(),
                                  kind.c_str(), name.c_str(), i, dim_repr(s).c_str()));
      } else if (d.has_dim_value() && (s.size < 0 || d.dim_value() != s.size)) {
        problems.push_back(format("%s: %s %s axis %d is %lld in the graph, %s in the manifest", graph.c_str(),
                                  kind.c_str(), name.c_str(), i, static_cast<long long>(d.dim_value()),
                                  dim_repr(s).c_str()));
      }
    }
  }
  return problems;
}

// What the manifest says a graph takes and gives; `precision` empty: not checked (the stream graph).
struct GraphContract {
  std::vector<TensorSpec> inputs, outputs;
  std::string precision;
  bool fixed = false;
};

// The stream graph's contract (contract.py's stream_io): one hop of audio and every state in,
// one frame and every next state out, all shapes fixed.
GraphContract stream_contract(const Manifest& m) {
  const StreamSpec& s = *m.stream;
  const Dim tracks = m.outputs[0].shape[2];
  const int64_t classes = static_cast<int64_t>(m.class_names.size()), frames = s.hop_samples / m.label_hop_samples;
  GraphContract c;
  c.fixed = true;
  c.inputs.push_back({"audio", {{1, ""}, {4, ""}, {s.hop_samples, ""}}, "float32"});
  c.outputs.push_back({"sed_logits", {{1, ""}, {frames, ""}, tracks, {classes, ""}}, "float32"});
  c.outputs.push_back({"doa", {{1, ""}, {frames, ""}, tracks, {classes, ""}, {3, ""}}, "float32"});
  for (const StreamState& x : s.states) {
    std::vector<Dim> shape;
    for (int64_t d : x.shape) shape.push_back({d, ""});
    c.inputs.push_back({x.input, shape, x.dtype});
    c.outputs.push_back({x.output, shape, x.dtype});
  }
  return c;
}

// The first node outside ONNX's own domains, subgraphs (If, Loop, Scan bodies) included, in
// contract.py's order; nullptr when every operator is standard.
const onnx::NodeProto* custom_node(const onnx::GraphProto& graph) {
  std::vector<const onnx::GraphProto*> stack = {&graph};
  while (!stack.empty()) {
    const onnx::GraphProto* g = stack.back();
    stack.pop_back();
    for (const auto& n : g->node()) {
      if (!contains(limits().standard_domains, n.domain())) return &n;
      for (const auto& a : n.attribute()) {
        if (a.type() == onnx::AttributeProto::GRAPH) stack.push_back(&a.g());
        for (const auto& sub : a.graphs()) stack.push_back(&sub);
      }
    }
  }
  return nullptr;
}

std::vector<std::string> graph_problems(const fs::path& root, const std::string& name, const GraphContract& c) {
  onnx::ModelProto model;
  std::ifstream in(root / name, std::ios::binary);
  if (!in || !model.ParseFromIstream(&in)) return {name + ": not a readable ONNX model (DecodeError)"};
  const auto& g = model.graph();
  std::set<std::string> init;
  for (const auto& t : g.initializer()) {
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      return {name + ": its weights point to external data files; a bundle's graphs hold their own weights"};
    }
    init.insert(t.name());
  }
  if (const onnx::NodeProto* n = custom_node(g)) {
    return {name + ": node " + py_repr(n->name()) + " is the custom operator " + n->domain() + "::" + n->op_type() +
            "; a bundle's graphs use standard ONNX operators only"};
  }
  std::vector<const onnx::ValueInfoProto*> inputs, outputs;
  for (const auto& v : g.input()) {
    if (!init.count(v.name())) inputs.push_back(&v);
  }
  for (const auto& v : g.output()) outputs.push_back(&v);
  auto problems = io_problems(name, "input", inputs, c.inputs, c.fixed);
  auto more = io_problems(name, "output", outputs, c.outputs, c.fixed);
  problems.insert(problems.end(), more.begin(), more.end());
  if (c.precision.empty()) return problems;
  bool has_qdq = false;
  for (const auto& n : g.node()) has_qdq = has_qdq || contains(limits().qdq_ops, n.op_type());
  if ((c.precision == "int8" || c.precision == "best") && !has_qdq) {
    problems.push_back(name + ": the manifest says " + c.precision +
                       ", but the graph has no QuantizeLinear/DequantizeLinear nodes");
  } else if ((c.precision == "fp32" || c.precision == "fp16") && has_qdq) {
    problems.push_back(name + ": the manifest says " + c.precision + ", but the graph is quantized (Q/DQ nodes)");
  }
  return problems;
}

std::vector<std::string> golden_problems(const fs::path& path, const Manifest& m) {
  const std::string name = path.filename().string();
  std::map<std::string, NpyArray> arrays;
  try {
    arrays = read_npz(path, false);
  } catch (const Error& e) {
    return {name + ": not a readable .npz (" + e.what() + ")"};
  }
  std::vector<std::string> keys;
  for (const auto& [key, a] : arrays) keys.push_back(key);
  if (keys != limits().golden_keys) {  // both sorted
    return {name + ": arrays " + py_list(keys) + ", expected " + py_list(limits().golden_keys)};
  }
  for (const auto& [key, a] : arrays) {
    if (a.dtype == "object") return {name + ": not a golden file: it holds pickled objects (refused)"};
  }
  double zip_bytes = 0, npy_bytes = 0;  // what the headers declare, before any data is read
  for (const auto& [key, a] : arrays) {
    zip_bytes += static_cast<double>(a.zip_bytes);
    npy_bytes += a.bytes();
  }
  if (std::max(zip_bytes, npy_bytes) > static_cast<double>(limits().max_golden_bytes)) {
    double declared = std::min(std::max(zip_bytes, npy_bytes), 1.8e19);  // printable as an integer
    return {name + ": its arrays hold " + thousands(static_cast<uintmax_t>(declared)) + " bytes; a golden file holds "
            "at most " + thousands(limits().max_golden_bytes)};
  }
  const NpyArray& audio = arrays["audio"];
  if (audio.dtype != "float32" || audio.shape.size() != 3 || audio.shape[1] != 4 || audio.shape[0] == 0) {
    return {name + ": audio is " + audio.dtype + " " + audio.shape_text() + ", expected float32 (inputs, 4, samples)"};
  }
  const Window& w = m.window;
  const int64_t n = audio.shape[2], hop = m.label_hop_samples;
  if (n % hop || n < w.min_samples || n > w.max_samples || (!w.dynamic_time && n != w.samples)) {
    return {format("%s: inputs of %lld samples do not fit the window the manifest gives", name.c_str(),
                   static_cast<long long>(n))};
  }
  const Dim tracks = m.outputs[0].shape[2];
  const int64_t classes = static_cast<int64_t>(m.class_names.size()), t = n / hop, count = audio.shape[0];
  std::vector<std::string> problems;
  for (const char* key : {"sed_logits", "doa"}) {
    const NpyArray& a = arrays[key];
    std::vector<Dim> want = {{count, ""}, {t, ""}, tracks, {classes, ""}};
    if (std::string(key) == "doa") want.push_back({3, ""});
    bool ok = a.dtype == "float32" && a.shape.size() == want.size();
    std::string expected = "(";
    for (size_t i = 0; i < want.size(); ++i) {
      ok = ok && (want[i].size < 0 || a.shape[i] == want[i].size);
      expected += (i ? ", " : "") + dim_repr(want[i]);
    }
    if (!ok) problems.push_back(name + ": " + key + " is " + a.dtype + " " + a.shape_text() + ", expected float32 " + expected + ")");
  }
  if (problems.empty()) {
    for (const auto& [key, a] : read_npz(path, true)) {
      for (float x : a.data) {
        if (!std::isfinite(x)) return {name + ": holds NaN or Inf"};
      }
    }
  }
  return problems;
}

// An engine entry must name a serialized plan (its tag; for TensorRT-RTX its recorded size), not
// any file renamed (contract.py's _engine_problems). The tags are those TensorRT-RTX 1.7's
// serializer writes (the format is not documented); a TensorRT-RTX plan records its size at byte 16.
std::vector<std::string> engine_problems(const fs::path& root, const Manifest& m) {
  if (!m.engine) return {};
  const std::string& title = limits().engine_titles.at(m.engine->builder);
  std::vector<std::string> names = {m.engine->file}, problems;
  if (m.stream && m.stream->engine) names.push_back(*m.stream->engine);
  for (const std::string& name : names) {
    std::ifstream in(root / name, std::ios::binary);
    unsigned char head[24] = {};
    in.read(reinterpret_cast<char*>(head), sizeof head);
    const auto got = in.gcount();
    std::error_code ec;
    const uintmax_t size = fs::file_size(root / name, ec);
    uint64_t recorded = 0;
    for (int k = 7; k >= 0; --k) recorded = (recorded << 8) | head[16 + k];  // little-endian
    const std::string tag(reinterpret_cast<const char*>(head), 4);
    if (got < 24 || !contains(limits().engine_tags, tag)) {
      problems.push_back(name + ": not a " + title + " engine (a serialized plan begins with the tag ftrt, vtrt or qtrt)");
    } else if (m.engine->builder == "tensorrt-rtx" && recorded != size) {
      problems.push_back(name + ": not a whole " + title + " engine (its header records " + thousands(recorded) +
                         " bytes, the file holds " + thousands(size) + ")");
    }
  }
  return problems;
}

}  // namespace

std::vector<std::string> contract_problems(const fs::path& root, const Manifest& m) {
  auto problems = graph_problems(root, m.model, GraphContract{m.inputs, m.outputs, m.precision});
  auto add = [&](const std::vector<std::string>& more) { problems.insert(problems.end(), more.begin(), more.end()); };
  if (m.fp16_model) add(graph_problems(root, *m.fp16_model, GraphContract{m.inputs, m.outputs, ""}));
  if (m.stream) add(graph_problems(root, m.stream->graph, stream_contract(m)));
  add(engine_problems(root, m));
  add(golden_problems(root / m.golden, m));
  return problems;
}

}  // namespace at2seld::detail
