// A check of a JSON document against the bundle manifest's pydantic models, read from their JSON
// schema (limits.hpp: extra keys forbidden, required keys, types, bounds, literals, patterns,
// plain file names), reporting every problem as at2seld_edge.schema.format_validation_error does:
// "key `a.b`: what was expected (got x)".
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace at2seld::detail {

// Dim: pydantic's union int | str (a fixed axis or a named dynamic one); Map: a dict of `item`s.
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
  std::string key;
  Kind kind = Kind::Any;
  bool required = true;
  bool nullable = false;
  const Schema* fields = nullptr;     // Obj: its fields
  std::shared_ptr<const Rule> item;   // List, Map: every element's rule
  std::vector<Bound> bounds;          // Int, Num, Dim
  std::vector<std::string> literal;   // Str: the allowed values
  std::string pattern;                // Str: a regex it must match
  bool file_name = false;             // Str: a plain relative file name inside the bundle; Map: its keys
  size_t min_length = 0;              // Str: characters
  size_t min_items = 0;               // List: items
};

// Strict JSON as bundle.py's parse_json reads it: integers of 64 bits, finite numbers, at most
// limits().max_json_depth nested containers, no key twice in one object. Throws std::invalid_argument saying which rule broke
// (its words are Python's for the same rule). Objects keep their keys' order, as Python's dicts
// do, so problems are reported in the same order.
nlohmann::ordered_json parse_json(const std::string& text);

// Why `name` is not a plain relative file name inside a bundle (bundle.py's _plain_name), or "".
std::string file_name_problem(const std::string& name);

// A JSON value as Python's repr() shows what json.loads made of it: 'a', True, None, [1, 2.5].
std::string py_value(const nlohmann::ordered_json& v);

// Every problem of `doc` against `schema`, in the schema's field order.
std::vector<std::string> validate(const nlohmann::ordered_json& doc, const Schema& schema);

// The bundle manifest's schema (deploy/bundle.py BundleManifest), built from its JSON schema once.
const Schema& manifest_schema();

// The fields of the model the JSON schema names `name` (e.g. "Tolerances"), in their order.
std::vector<std::string> model_fields(const std::string& name);

}  // namespace at2seld::detail
