#include "schema.hpp"

#include <algorithm>
#include <limits>
#include <regex>
#include <stdexcept>

#include "util.hpp"

namespace at2seld::detail {
namespace {

using json = nlohmann::json;

std::string shown(const json& v) {
  if (v.is_object() || v.is_null()) return "";
  return " (got " + (v.is_string() ? py_repr(v.get<std::string>()) : v.dump()) + ")";
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string literal_list(const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + py_repr(values[i]);
  }
  return out;
}

struct Checker {
  std::vector<std::string> problems;

  void fail(const std::string& loc, const std::string& msg, const json& v) {
    problems.push_back(loc.empty() ? msg + shown(v) : "key `" + loc + "`: " + msg + shown(v));
  }

  void object(const json& v, const Schema& schema, const std::string& loc) {
    if (!v.is_object()) return fail(loc, "Input should be a valid dictionary", v);
    std::string prefix = loc.empty() ? "" : loc + ".";
    for (const Rule& r : schema) {
      auto it = v.find(r.key);
      if (it == v.end()) {
        if (r.required) problems.push_back("key `" + prefix + r.key + "`: required key is missing");
      } else {
        value(*it, r, r.kind, prefix + r.key);
      }
    }
    std::vector<std::string> allowed;
    for (const Rule& r : schema) allowed.push_back(r.key);
    for (auto it = v.begin(); it != v.end(); ++it) {
      bool known = false;
      for (const Rule& r : schema) known = known || r.key == it.key();
      if (!known) {
        problems.push_back("key `" + prefix + it.key() + "`: unknown key (expected one of: " + join(allowed, ", ") + ")");
      }
    }
  }

  void value(const json& v, const Rule& r, Kind kind, const std::string& loc) {
    if (v.is_null() && r.nullable && kind == r.kind) return;
    switch (kind) {
      case Kind::Str:
        if (!v.is_string()) return fail(loc, "Input should be a valid string", v);
        if (v.get<std::string>().size() < r.min_length) {
          return fail(loc, "String should have at least " + std::to_string(r.min_length) +
                               (r.min_length == 1 ? " character" : " characters"), v);
        }
        if (!r.literal.empty() && std::find(r.literal.begin(), r.literal.end(), v.get<std::string>()) == r.literal.end()) {
          return fail(loc, "Input should be " + literal_list(r.literal), v);
        }
        if (!r.pattern.empty() && !std::regex_search(v.get<std::string>(), std::regex(r.pattern))) {
          return fail(loc, "String should match pattern " + py_repr(r.pattern), v);
        }
        if (r.file_name && !file_name_problem(v.get<std::string>()).empty()) {
          return fail(loc, file_name_problem(v.get<std::string>()), v);
        }
        return;
      case Kind::Int:
        if (!v.is_number_integer()) return fail(loc, "Input should be a valid integer", v);
        return bounded(v, r, loc);
      case Kind::Num:
        if (!v.is_number()) return fail(loc, "Input should be a valid number", v);
        return bounded(v, r, loc);
      case Kind::Bool:
        if (!v.is_boolean()) return fail(loc, "Input should be a valid boolean", v);
        return;
      case Kind::Dim: {  // 1 <= int <= kMaxDim | str: a fixed size or a named dynamic axis
        if (v.is_string()) return;
        if (!v.is_number_integer()) return fail(loc, "Input should be a valid integer or string", v);
        const long long x = v.get<long long>();
        const std::string why = x < 1 ? "greater than or equal to 1"
                                : x > kMaxDim ? "less than or equal to " + std::to_string(kMaxDim) : "";
        if (!why.empty()) {  // pydantic reports both members of the union
          fail(loc + ".constrained-int", "Input should be " + why, v);
          fail(loc + ".str", "Input should be a valid string", v);
        }
        return;
      }
      case Kind::Obj:
        return object(v, *r.nested, loc);
      case Kind::List:
        if (!v.is_array()) return fail(loc, "Input should be a valid list", v);
        if (v.size() < r.min_length) {
          return fail(loc, "List should have at least " + std::to_string(r.min_length) +
                               (r.min_length == 1 ? " item" : " items") + " after validation, not " +
                               std::to_string(v.size()), v);
        }
        for (size_t i = 0; i < v.size(); ++i) element(v[i], r, loc + "." + std::to_string(i));
        return;
      case Kind::Map:
        if (!v.is_object()) return fail(loc, "Input should be a valid dictionary", v);
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (r.file_name && !file_name_problem(it.key()).empty()) {
            fail(loc + "." + it.key() + ".[key]", file_name_problem(it.key()), json(it.key()));
          }
          element(it.value(), r, loc + "." + it.key());
        }
        return;
      case Kind::Any:
        return;
    }
  }

  void bounded(const json& v, const Rule& r, const std::string& loc) {
    double x = v.get<double>();
    for (const Bound& b : r.bounds) {
      static const char* words[] = {"", "greater than", "greater than or equal to", "less than", "less than or equal to"};
      bool ok = b.op == Bound::Gt ? x > b.value : b.op == Bound::Ge ? x >= b.value : b.op == Bound::Lt ? x < b.value
                                                                                                         : x <= b.value;
      if (!ok) return fail(loc, std::string("Input should be ") + words[b.op] + " " + b.text, v);
    }
  }

  void element(const json& v, const Rule& r, const std::string& loc) {
    if (r.element == Kind::Obj) return object(v, *r.nested, loc);
    Rule inner = r;
    inner.kind = r.element;
    inner.nullable = false;
    inner.file_name = false;
    value(v, inner, r.element, loc);
  }
};

Rule field(const char* key, Kind kind) { return Rule{key, kind}; }
Rule optional(Rule r, bool nullable = true) {
  r.required = false;
  r.nullable = nullable;
  return r;
}
Rule nullable(Rule r) {
  r.nullable = true;
  return r;
}
Rule bound(Rule r, Bound::Op op, double value, const char* text) {
  r.bounds.push_back(Bound{op, value, text});
  return r;
}
Rule file_name(const char* key) {
  Rule r{key, Kind::Str};
  r.file_name = true;
  return r;
}
Rule min_length(Rule r, size_t n) {  // a string of at least n characters
  r.min_length = n;
  return r;
}
Rule literal(const char* key, std::vector<std::string> values) {
  Rule r{key, Kind::Str};
  r.literal = std::move(values);
  return r;
}
Rule object(const char* key, const Schema& s) {
  Rule r{key, Kind::Obj};
  r.nested = &s;
  return r;
}
Rule list(const char* key, Kind element, const Schema* nested = nullptr, size_t min_length = 0) {
  Rule r{key, Kind::List};
  r.element = element;
  r.nested = nested;
  r.min_length = min_length;
  return r;
}
Rule map(const char* key, Kind element, const Schema* nested = nullptr) {
  Rule r{key, Kind::Map};
  r.element = element;
  r.nested = nested;
  return r;
}

// A number's text as the messages show it: long ones cut (a tampered manifest's 5,000 digits).
std::string shown_token(const std::string& token) {
  if (token.size() <= 24) return token;
  return token.substr(0, 20) + "... (" + thousands(token.size()) + " characters)";
}

// nlohmann's DOM parser behind a SAX filter: depth, 64-bit integers and finite numbers checked
// as the document streams in, so nothing out of bounds is ever built.
class BoundedSax {
 public:
  explicit BoundedSax(nlohmann::json& out) : dom_(out, false) {}
  std::string error;

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(nlohmann::json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(nlohmann::json::number_unsigned_t v) {
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return out_of_range(std::to_string(v));
    return dom_.number_unsigned(v);
  }
  bool number_float(nlohmann::json::number_float_t v, const std::string& token) {
    // an integer too long for 64 bits arrives here as a double: refused, as Python's parse_int does
    if (token.find_first_of(".eE") == std::string::npos) return out_of_range(token);
    return dom_.number_float(v, token);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(nlohmann::json::binary_t& v) { return dom_.binary(v); }
  bool key(std::string& k) { return dom_.key(k); }
  bool start_object(std::size_t n) { return deeper() && dom_.start_object(n); }
  bool end_object() { --depth_; return dom_.end_object(); }
  bool start_array(std::size_t n) { return deeper() && dom_.start_array(n); }
  bool end_array() { --depth_; return dom_.end_array(); }
  bool parse_error(std::size_t, const std::string& token, const nlohmann::detail::exception& e) {
    error = e.id == 406 ? "number " + shown_token(token) + " is out of range" : e.what();  // 406: overflow
    return false;
  }

 private:
  bool deeper() {
    if (++depth_ <= kMaxJsonDepth) return true;
    error = "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  bool out_of_range(const std::string& token) {
    error = "number " + shown_token(token) + " is out of range";
    return false;
  }
  nlohmann::detail::json_sax_dom_parser<nlohmann::json> dom_;
  int depth_ = 0;
};

}  // namespace

nlohmann::json parse_json(const std::string& text) {
  nlohmann::json out;
  BoundedSax sax(out);
  if (!nlohmann::json::sax_parse(text, &sax)) throw std::invalid_argument(sax.error);
  return out;
}

std::vector<std::string> validate(const nlohmann::json& doc, const Schema& schema) {
  Checker c;
  c.object(doc, schema, "");
  return c.problems;
}

std::string file_name_problem(const std::string& name) {
  bool bad = name.empty() || name[0] == '/' || name.find('\\') != std::string::npos ||
             name.substr(0, name.find('/')).find(':') != std::string::npos;
  for (size_t start = 0; !bad; start = name.find('/', start) + 1) {
    std::string part = name.substr(start, name.find('/', start) - start);
    bad = part.empty() || part == "." || part == "..";
    if (name.find('/', start) == std::string::npos) break;
  }
  return bad ? py_repr(name) + " is not a plain relative file name inside the bundle" : "";
}

// deploy/bundle.py's BundleManifest, field for field (deploy/trt_check.py's TensorRTCheck nested).
const Schema& manifest_schema() {
  using B = Bound;
  static const Schema tensor = {field("name", Kind::Str), list("shape", Kind::Dim),
                                literal("dtype", {"float32", "float16", "int64", "int32"})};
  static const Schema file = [] {
    Rule sha = field("sha256", Kind::Str);
    sha.pattern = "^[0-9a-f]{64}$";
    return Schema{sha, bound(field("bytes", Kind::Int), B::Ge, 0, "0")};
  }();
  const double most = static_cast<double>(kMaxWindowSamples);
  const char* most_text = "134217728";  // kMaxWindowSamples
  auto samples = [&](const char* key, B::Op low, double low_value, const char* low_text) {
    return bound(bound(field(key, Kind::Int), low, low_value, low_text), B::Le, most, most_text);
  };
  static const Schema window = {field("dynamic_time", Kind::Bool), samples("samples", B::Gt, 0, "0"),
                                samples("min_samples", B::Gt, 0, "0"), samples("max_samples", B::Gt, 0, "0")};
  static const Schema state = {min_length(field("name", Kind::Str), 1), min_length(field("input", Kind::Str), 1),
                               min_length(field("output", Kind::Str), 1),
                               bound(bound(list("shape", Kind::Int, nullptr, 1), B::Ge, 1, "1"), B::Le,
                                     static_cast<double>(kMaxDim), "2147483647"),
                               optional(literal("dtype", {"float32"}), false)};
  static const Schema stream = {file_name("graph"), samples("hop_samples", B::Gt, 0, "0"),
                                samples("lookahead_samples", B::Ge, 0, "0"), samples("context_samples", B::Ge, 0, "0"),
                                samples("history_frames", B::Ge, 1, "1"), list("states", Kind::Obj, &state, 1),
                                optional(file_name("engine"))};
  auto tolerance = [](const char* key, B::Op low, double low_value, const char* low_text, double high,
                      const char* high_text) {
    return optional(bound(bound(field(key, Kind::Num), low, low_value, low_text), B::Le, high, high_text));
  };
  // the bounds' text as pydantic prints them (1.0 as 1)
  static const Schema tolerances = {tolerance("max_abs_logit", B::Gt, 0, "0", 1.0, "1"),
                                    tolerance("max_abs_doa", B::Gt, 0, "0", 1.0, "1"),
                                    tolerance("min_decision_agreement", B::Ge, 0.5, "0.5", 1.0, "1"),
                                    tolerance("max_mean_doa_error_deg", B::Gt, 0, "0", 30.0, "30"),
                                    tolerance("max_p95_doa_error_deg", B::Gt, 0, "0", 60.0, "60")};
  static const Schema engine = {file_name("file"), optional(literal("builder", {"tensorrt", "tensorrt-rtx"}), false),
                                field("tensorrt_version", Kind::Str), field("gpu_name", Kind::Str),
                                field("compute_capability", Kind::Str),
                                optional(list("compute_capabilities", Kind::Str), false),
                                optional(field("dla_core", Kind::Int)), optional(file_name("layer_info")),
                                optional(field("timing_cache", Kind::Str))};
  static const Schema graph_check = {
      field("file", Kind::Str), field("role", Kind::Str), field("parsed", Kind::Bool),
      optional(list("errors", Kind::Str), false), optional(field("layers", Kind::Int), false),
      optional(map("layers_by_module", Kind::Int), false), optional(map("layers_by_type", Kind::Int), false),
      optional(field("built", Kind::Bool)), optional(field("build_seconds", Kind::Num)),
      optional(field("engine_bytes", Kind::Int)), optional(field("build_error", Kind::Str))};
  static const Schema tensorrt_check = {field("builder", Kind::Str), field("version", Kind::Str),
                                        optional(list("compute_capabilities", Kind::Str), false),
                                        list("graphs", Kind::Obj, &graph_check)};
  static const Schema manifest = [&] {
    Rule files = map("files", Kind::Obj, &file);
    files.file_name = true;
    return Schema{optional(literal("format", {"at2seld-edge.bundle/2"}), false), field("toolkit_version", Kind::Str),
                  field("created_utc", Kind::Str), field("target", Kind::Str), field("target_tensorrt", Kind::Str),
                  literal("precision", {"fp32", "fp16", "int8", "best"}), file_name("model"),
                  list("inputs", Kind::Obj, &tensor, 1), list("outputs", Kind::Obj, &tensor, 2),
                  bound(bound(field("sample_rate", Kind::Int), B::Ge, 8000, "8000"), B::Le, 192000, "192000"),
                  field("channel_order", Kind::Str),
                  bound(bound(field("label_hop_s", Kind::Num), B::Gt, 0, "0"), B::Le, 60.0, "60"),
                  samples("label_hop_samples", B::Gt, 0, "0"), object("window", window),
                  field("causal", Kind::Bool), optional(object("stream", stream)),
                  list("class_names", Kind::Str, nullptr, 1),
                  bound(bound(list("thresholds", Kind::Num), B::Gt, 0, "0"), B::Lt, 1, "1"),
                  field("config_name", Kind::Str), field("config_fingerprint", Kind::Str),
                  field("source_checkpoint", Kind::Str), nullable(field("source_checkpoint_sha256", Kind::Str)),
                  optional(file_name("calibration_cache")), file_name("golden"), object("tolerances", tolerances),
                  optional(file_name("profile_report")), file_name("build_script"), optional(object("engine", engine)),
                  optional(file_name("fp16_model")), optional(object("tensorrt_check", tensorrt_check)),
                  optional(list("steps", Kind::Any), false), files};
  }();
  return manifest;
}

}  // namespace at2seld::detail
