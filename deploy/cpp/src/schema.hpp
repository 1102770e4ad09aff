// A declarative check of a JSON document against the bundle manifest's pydantic models (extra
// keys forbidden, required keys, types, bounds), reporting every problem as
// at2seld_edge.config.format_validation_error does: "key `a.b`: what was expected (got x)".
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace at2seld::detail {

enum class Kind { Str, Int, Num, Bool, Dim, Obj, List, Map, Any };

// A numeric bound as pydantic states it ("greater than or equal to 8000"); text is Python's repr.
struct Bound {
  enum Op { None, Gt, Ge, Lt, Le } op = None;
  double value = 0;
  std::string text;
};

struct Rule;
using Schema = std::vector<Rule>;

struct Rule {
  Rule(std::string key_, Kind kind_) : key(std::move(key_)), kind(kind_) {}
  std::string key;
  Kind kind;
  bool required = true;
  bool nullable = false;
  const Schema* nested = nullptr;  // Obj: its fields; List/Map: the element's (with `element`)
  Kind element = Kind::Any;        // List/Map: the element kind
  std::vector<Bound> bounds;        // Int/Num (and a List's elements)
  std::vector<std::string> literal;  // Str: the allowed values
  std::string pattern;             // Str: a regex it must match
  bool file_name = false;          // Str: a plain relative file name inside the bundle
  size_t min_length = 0;           // List: items; Str: characters
};

// deploy/bundle.py's bounds: nesting, a tensor axis, one inference's input, the label hop.
constexpr int kMaxJsonDepth = 32;
constexpr int64_t kMaxDim = 2147483647;
constexpr int64_t kMaxWindowSamples = int64_t{1} << 27;

// Strict JSON as bundle.py's parse_json reads it: integers of 64 bits, finite numbers, at most
// kMaxJsonDepth nested containers. Throws std::invalid_argument saying which rule broke (its
// words are Python's for the same rule).
nlohmann::json parse_json(const std::string& text);

// Why `name` is not a plain relative file name inside a bundle (bundle.py's _plain_name), or "".
std::string file_name_problem(const std::string& name);

// Every problem of `doc` against `schema`, in document order.
std::vector<std::string> validate(const nlohmann::json& doc, const Schema& schema);

// The bundle manifest's schema (deploy/bundle.py BundleManifest).
const Schema& manifest_schema();

}  // namespace at2seld::detail
