#include "manifest.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "contract.hpp"
#include "limits.hpp"
#include "schema.hpp"
#include "util.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace at2seld::detail {

const char* const kToolkitVersion = AT2SELD_TOOLKIT_VERSION;

namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

// 0.x: the minor is the major (as bundle.py's _major).
std::string major(const std::string& version) {
  auto dot = version.find('.');
  std::string first = version.substr(0, dot);
  if (first != "0" || dot == std::string::npos) return first;
  auto dot2 = version.find('.', dot + 1);
  return version.substr(0, dot2);
}

json read_json(const fs::path& mpath) {
  std::string text = read_text(mpath);
  try {
    return parse_json(text);
  } catch (const std::exception& e) {
    throw Error(mpath.string() + ": not readable JSON (" + e.what() + ")");
  }
}

TensorSpec tensor_spec(const json& j) {
  TensorSpec t{j.at("name").get<std::string>(), {}, j.at("dtype").get<std::string>()};
  for (const json& d : j.at("shape")) {
    t.shape.push_back(d.is_string() ? Dim{-1, d.get<std::string>()} : Dim{d.get<int64_t>(), ""});
  }
  return t;
}

StreamSpec stream_spec(const json& s) {
  StreamSpec spec;
  spec.graph = s.at("graph");
  if (s.contains("engine") && !s.at("engine").is_null()) spec.engine = s.at("engine").get<std::string>();
  spec.hop_samples = s.at("hop_samples");
  spec.lookahead_samples = s.at("lookahead_samples");
  spec.context_samples = s.at("context_samples");
  spec.history_frames = s.at("history_frames");
  for (const json& x : s.at("states")) {
    spec.states.push_back(StreamState{x.at("name"), x.at("input"), x.at("output"), x.value("dtype", "float32"),
                                      x.at("shape").get<std::vector<int64_t>>()});
  }
  return spec;
}

Manifest from_json(const json& j) {
  Manifest m;
  m.format = limits().format;
  m.toolkit_version = j.at("toolkit_version");
  m.target = j.at("target");
  m.precision = j.at("precision");
  m.model = j.at("model");
  m.golden = j.at("golden");
  m.channel_order = j.at("channel_order");
  for (const json& t : j.at("inputs")) m.inputs.push_back(tensor_spec(t));
  for (const json& t : j.at("outputs")) m.outputs.push_back(tensor_spec(t));
  m.sample_rate = j.at("sample_rate");
  m.label_hop_s = j.at("label_hop_s");
  m.label_hop_samples = j.at("label_hop_samples");
  const json& w = j.at("window");
  m.window = Window{w.at("dynamic_time"), w.at("samples"), w.at("min_samples"), w.at("max_samples")};
  m.causal = j.at("causal");
  if (j.contains("stream") && !j.at("stream").is_null()) m.stream = stream_spec(j.at("stream"));
  m.class_names = j.at("class_names").get<std::vector<std::string>>();
  for (const json& t : j.at("thresholds")) m.thresholds.push_back(static_cast<float>(t.get<double>()));
  for (auto it = j.at("tolerances").begin(); it != j.at("tolerances").end(); ++it) {
    m.tolerances[it.key()] = it->is_null() ? std::nullopt : std::optional<double>(it->get<double>());
  }
  for (const std::string& key : model_fields("Tolerances")) m.tolerances.emplace(key, std::nullopt);
  if (j.contains("engine") && !j.at("engine").is_null()) {
    const json& e = j.at("engine");
    m.engine = EngineInfo{e.at("file"), e.value("builder", "tensorrt"), e.at("tensorrt_version"), e.at("gpu_name"),
                          e.at("compute_capability")};
  }
  if (j.contains("fp16_model") && j.at("fp16_model").is_string()) m.fp16_model = j.at("fp16_model").get<std::string>();
  return m;
}

// Every file the manifest points to besides the hashed list (BundleManifest.named_files).
std::vector<std::string> named_files(const json& j) {
  std::vector<std::string> names;
  auto add = [&](const json& obj, const char* key) {
    if (obj.contains(key) && obj.at(key).is_string()) names.push_back(obj.at(key));
  };
  for (const char* key : {"model", "golden", "build_script", "calibration_cache", "profile_report", "fp16_model"}) {
    add(j, key);
  }
  for (const char* owner : {"stream", "engine"}) {
    if (!j.contains(owner) || j.at(owner).is_null()) continue;
    for (const char* key : {"graph", "engine", "file", "layer_info"}) add(j.at(owner), key);
  }
  return names;
}

// Every file under the bundle but the manifest, by POSIX relative path; symlinks are listed as
// themselves, never followed (bundle.py's bundle_files).
std::vector<std::string> bundle_files(const fs::path& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_symlink(ec) && it->is_directory(ec)) continue;
    std::string rel = it->path().lexically_relative(root).generic_string();
    if (rel != limits().manifest) names.push_back(rel);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool inside(const fs::path& root, const fs::path& p) {
  std::error_code ec;
  fs::path base = fs::canonical(root, ec), full = fs::weakly_canonical(p, ec);
  auto [b, f] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  return !ec && b == base.end();
}

// Names that leave the bundle, files changed, missing, unlisted or named but not hashed.
std::vector<std::string> file_problems(const fs::path& root, const json& j) {
  std::vector<std::string> problems;
  const json& files = j.at("files");
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string& name = it.key();
    fs::path p = root / name;
    std::error_code ec;
    if (fs::is_symlink(p, ec) && !inside(root, p)) {
      problems.push_back(name + ": a symlink out of the bundle (to " + fs::read_symlink(p, ec).string() + ")");
    } else if (!fs::is_regular_file(p, ec)) {
      problems.push_back(name + ": missing");
    } else if (static_cast<int64_t>(fs::file_size(p, ec)) != it->at("bytes").get<int64_t>() ||
               sha256_file(p) != it->at("sha256").get<std::string>()) {
      problems.push_back(name + ": sha256 differs from the manifest (changed after the build)");
    }
  }
  for (const std::string& name : bundle_files(root)) {
    if (!files.contains(name)) problems.push_back(name + ": present but not listed in the manifest");
  }
  for (const std::string& name : named_files(j)) {
    if (!files.contains(name)) problems.push_back(name + ": named by the manifest but not hashed in it");
  }
  return problems;
}

// The Stream model's validator: distinct state names, inputs and outputs; bounded state.
std::string stream_problem(const StreamSpec& s) {
  std::set<std::string> names = {"audio", "sed_logits", "doa"}, layers;
  size_t count = 3;
  for (const StreamState& x : s.states) {
    names.insert(x.input);
    names.insert(x.output);
    layers.insert(x.name);
    count += 2;
  }
  if (names.size() != count || layers.size() != s.states.size()) {
    return "stream: every state needs its own name, input and output, none named audio, sed_logits or doa";
  }
  double bytes = 0;  // in double: a forged shape cannot overflow it
  for (const StreamState& x : s.states) {
    double n = 4;
    for (int64_t d : x.shape) n *= static_cast<double>(d);
    bytes += n;
  }
  if (bytes > static_cast<double>(limits().max_state_bytes)) {
    return "stream: the states hold more than " + thousands(limits().max_state_bytes) + " bytes";
  }
  return "";
}

// The tolerances the precision's golden check judges by (evaluation/agreement.py's tolerances())
// that the manifest leaves out, comma-separated, or "".
std::string missing_tolerances(const Manifest& m) {
  std::string missing;
  for (const std::string& key : limits().golden_tolerances.at(m.precision)) {
    if (!m.tolerances.at(key)) missing += (missing.empty() ? "" : ", ") + key;
  }
  return missing;
}

// The pydantic model validators of Window, Stream and BundleManifest (run once the fields are valid).
std::vector<std::string> validator_problems(const Manifest& m, const std::vector<std::string>& field_problems) {
  const Window& w = m.window;
  std::vector<std::string> problems;
  bool window_fields_ok = std::none_of(field_problems.begin(), field_problems.end(),
                                       [](const std::string& p) { return p.rfind("key `window.", 0) == 0; });
  if (window_fields_ok && !(w.min_samples <= w.samples && w.samples <= w.max_samples)) {
    problems.push_back(format("key `window`: window: min_samples %lld <= samples %lld <= max_samples %lld does not hold",
                              static_cast<long long>(w.min_samples), static_cast<long long>(w.samples),
                              static_cast<long long>(w.max_samples)));
  } else if (window_fields_ok && !w.dynamic_time && !(w.min_samples == w.samples && w.samples == w.max_samples)) {
    problems.push_back("key `window`: window: a static window has min_samples = samples = max_samples");
  }
  bool stream_fields_ok = std::none_of(field_problems.begin(), field_problems.end(),
                                       [](const std::string& p) { return p.rfind("key `stream.", 0) == 0; });
  if (m.stream && stream_fields_ok && !stream_problem(*m.stream).empty()) {
    problems.push_back("key `stream`: " + stream_problem(*m.stream));
  }
  if (!problems.empty() || !field_problems.empty()) return problems;
  const int64_t hop = m.label_hop_samples;
  std::set<std::string> unique(m.class_names.begin(), m.class_names.end());
  if (hop != std::llround(m.label_hop_s * static_cast<double>(m.sample_rate))) {
    return {format("label_hop_samples %lld is not label_hop_s %s x sample_rate %lld", static_cast<long long>(hop),
                   json(m.label_hop_s).dump().c_str(), static_cast<long long>(m.sample_rate))};
  }
  if (w.samples % hop || w.min_samples % hop || w.max_samples % hop) {
    return {format("window lengths %lld/%lld/%lld are not whole label hops of %lld samples",
                   static_cast<long long>(w.min_samples), static_cast<long long>(w.samples),
                   static_cast<long long>(w.max_samples), static_cast<long long>(hop))};
  }
  if (m.thresholds.size() != m.class_names.size()) {
    return {format("%zu thresholds for %zu classes", m.thresholds.size(), m.class_names.size())};
  }
  if (m.stream && m.stream->hop_samples != hop) {
    return {format("stream.hop_samples %lld is not the label hop (%lld samples)",
                   static_cast<long long>(m.stream->hop_samples), static_cast<long long>(hop))};
  }
  if (unique.size() != m.class_names.size()) return {"class_names repeats a name"};
  for (size_t k = 0; k < 2; ++k) {
    const TensorSpec& out = m.outputs[k];
    if (out.shape.size() < 4 || out.shape[3].size != static_cast<int64_t>(m.class_names.size())) {
      std::string shape = "[";
      for (size_t i = 0; i < out.shape.size(); ++i) {
        shape += (i ? ", " : "") + (out.shape[i].size < 0 ? py_repr(out.shape[i].symbol) : std::to_string(out.shape[i].size));
      }
      return {format("output %s has shape %s]; its class axis (4th) must be %zu, the number of class_names",
                     out.name.c_str(), shape.c_str(), m.class_names.size())};
    }
  }
  std::string missing = missing_tolerances(m);
  if (!missing.empty()) {
    return {"tolerances: " + missing + " missing; the " + m.precision + " golden check judges by them"};
  }
  return {};
}

// What both runtimes rely on beyond the contract (contract.py's runtime_problem): outputs
// sed_logits (1, frames, tracks, classes) and doa (1, frames, tracks, classes, 3) with a fixed
// number of tracks, one input.
std::string runtime_problem(const Manifest& m) {
  auto find = [&](const char* name) -> const TensorSpec* {
    for (const TensorSpec& t : m.outputs) {
      if (t.name == name) return &t;
    }
    return nullptr;
  };
  const TensorSpec *sed = find("sed_logits"), *doa = find("doa");
  bool ok = m.inputs.size() == 1 && m.inputs[0].shape.size() == 3 && m.inputs[0].dtype == "float32" && sed && doa &&
            sed->dtype == "float32" && doa->dtype == "float32" && sed->shape.size() == 4 && doa->shape.size() == 5 &&
            sed->shape[2].size > 0 && doa->shape[2].size == sed->shape[2].size && doa->shape[4].size == 3;
  return ok ? "" : "the runtime takes one float32 input (1, 4, samples) and float32 outputs sed_logits (1, frames, "
                   "tracks, classes) and doa (1, frames, tracks, classes, 3) with a fixed number of tracks";
}

}  // namespace

Manifest load_manifest(const fs::path& root) {
  const BundleLimits& l = limits();
  fs::path mpath = root / l.manifest;
  std::error_code ec;
  if (!fs::is_regular_file(mpath, ec)) throw Error(root.string() + ": not a bundle (no " + l.manifest + ")");
  auto size = fs::file_size(mpath, ec);
  if (size > l.max_manifest_bytes) {
    throw Error(mpath.string() + ": " + thousands(size) + " bytes; a manifest is a few kB (at most " +
                thousands(l.max_manifest_bytes) + ")");
  }
  json j = read_json(mpath);
  if (!j.is_object()) throw Error(mpath.string() + ": not a manifest (a JSON object is expected)");
  if (j.value("format", json()) != json(l.format)) {
    json f = j.value("format", json());
    throw Error(mpath.string() + ": bundle format " + py_value(f) +
                "; this toolkit (" + kToolkitVersion + ") reads " + py_repr(l.format));
  }
  auto problems = validate(j, manifest_schema());
  Manifest m;
  bool window_ok = j.contains("window") && j.at("window").is_object();
  if (problems.empty() || window_ok) {
    try {
      m = from_json(j);  // complete when the fields validated; enough for the window's checks otherwise
    } catch (const json::exception&) {
      window_ok = false;
    }
  }
  if (window_ok || problems.empty()) {
    auto more = validator_problems(m, problems);
    problems.insert(problems.end(), more.begin(), more.end());
  }
  if (!problems.empty()) throw Error(mpath.string() + ": " + join(problems));
  if (major(m.toolkit_version) != major(kToolkitVersion)) {
    throw Error(mpath.string() + ": made by at2seld-edge " + m.toolkit_version + "; this is " + kToolkitVersion +
                " (a different major version); rebuild the bundle");
  }
  problems = file_problems(root, j);
  if (!problems.empty()) throw Error(root.string() + ": bundle integrity check failed: " + join(problems), ErrorKind::Check);
  problems = contract_problems(root, m);
  if (!problems.empty()) {
    throw Error(root.string() + ": the manifest does not describe its files: " + join(problems), ErrorKind::Check);
  }
  std::string unsupported = runtime_problem(m);
  if (!unsupported.empty()) throw Error(mpath.string() + ": " + unsupported);
  return m;
}

}  // namespace at2seld::detail
