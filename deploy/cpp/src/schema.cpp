#include "schema.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <limits>
#include <regex>
#include <set>
#include <stdexcept>

#include "limits.hpp"
#include "util.hpp"

namespace at2seld::detail {

using json = nlohmann::ordered_json;

std::string py_value(const json& v) {
  if (v.is_string()) return py_repr(v.get<std::string>());
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  if (v.is_array() || v.is_object()) {
    std::string out;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += (out.empty() ? "" : ", ") + (v.is_object() ? py_repr(it.key()) + ": " : "") + py_value(*it);
    }
    return v.is_array() ? "[" + out + "]" : "{" + out + "}";
  }
  return v.dump();
}

namespace {

// format_validation_error's "(got x)": left out for an object or None.
std::string shown(const json& v) {
  if (v.is_object() || v.is_null()) return "";
  return " (got " + py_value(v) + ")";
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

// pydantic's words for the first bound `v` breaks, or "".
std::string bound_problem(const json& v, const std::vector<Bound>& bounds) {
  static const char* words[] = {"", "greater than", "greater than or equal to", "less than", "less than or equal to"};
  const double x = v.get<double>();
  for (const Bound& b : bounds) {
    bool ok = b.op == Bound::Gt ? x > b.value : b.op == Bound::Ge ? x >= b.value : b.op == Bound::Lt ? x < b.value
                                                                                                       : x <= b.value;
    if (!ok) return std::string("Input should be ") + words[b.op] + " " + b.text;
  }
  return "";
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
        value(*it, r, prefix + r.key);
      }
    }
    std::vector<std::string> allowed;
    for (const Rule& r : schema) allowed.push_back(r.key);
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
        problems.push_back("key `" + prefix + it.key() + "`: unknown key (expected one of: " + join(allowed, ", ") + ")");
      }
    }
  }

  void value(const json& v, const Rule& r, const std::string& loc) {
    if (v.is_null() && r.nullable) return;
    switch (r.kind) {
      case Kind::Str: return string(v, r, loc);
      case Kind::Int:
        if (!v.is_number_integer()) return fail(loc, "Input should be a valid integer", v);
        return bounded(v, r, loc);
      case Kind::Num:
        if (!v.is_number()) return fail(loc, "Input should be a valid number", v);
        return bounded(v, r, loc);
      case Kind::Bool:
        if (!v.is_boolean()) return fail(loc, "Input should be a valid boolean", v);
        return;
      case Kind::Dim: {  // pydantic reports each member of the union int | str that failed
        if (v.is_string()) return;
        const std::string tag = r.bounds.empty() ? ".int" : ".constrained-int";
        std::string why = v.is_number_integer() ? bound_problem(v, r.bounds) : "Input should be a valid integer";
        if (!why.empty()) {
          fail(loc + tag, why, v);
          fail(loc + ".str", "Input should be a valid string", v);
        }
        return;
      }
      case Kind::Obj:
        return object(v, *r.fields, loc);
      case Kind::List:
        if (!v.is_array()) return fail(loc, "Input should be a valid list", v);
        if (v.size() < r.min_items) {
          return fail(loc, "List should have at least " + std::to_string(r.min_items) +
                               (r.min_items == 1 ? " item" : " items") + " after validation, not " +
                               std::to_string(v.size()), v);
        }
        for (size_t i = 0; i < v.size(); ++i) value(v[i], *r.item, loc + "." + std::to_string(i));
        return;
      case Kind::Map:
        if (!v.is_object()) return fail(loc, "Input should be a valid dictionary", v);
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (r.file_name && !file_name_problem(it.key()).empty()) {
            fail(loc + "." + it.key() + ".[key]", file_name_problem(it.key()), json(it.key()));
          }
          value(it.value(), *r.item, loc + "." + it.key());
        }
        return;
      case Kind::Any:
        return;
    }
  }

  void string(const json& v, const Rule& r, const std::string& loc) {
    if (!r.literal.empty()) {  // a Literal: any other value, of any type, is the one error
      if (!v.is_string() || std::find(r.literal.begin(), r.literal.end(), v.get<std::string>()) == r.literal.end()) {
        fail(loc, "Input should be " + literal_list(r.literal), v);
      }
      return;
    }
    if (!v.is_string()) return fail(loc, "Input should be a valid string", v);
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() < r.min_length) {
      return fail(loc, "String should have at least " + std::to_string(r.min_length) +
                           (r.min_length == 1 ? " character" : " characters"), v);
    }
    if (!r.pattern.empty() && !std::regex_search(s, std::regex(r.pattern))) {
      return fail(loc, "String should match pattern " + py_repr(r.pattern), v);
    }
    if (r.file_name && !file_name_problem(s).empty()) return fail(loc, file_name_problem(s), v);
  }

  void bounded(const json& v, const Rule& r, const std::string& loc) {
    std::string why = bound_problem(v, r.bounds);
    if (!why.empty()) fail(loc, why, v);
  }
};

// A number's text as the messages show it: long ones cut (a tampered manifest's 5,000 digits).
std::string shown_token(const std::string& token) {
  if (token.size() <= 24) return token;
  return token.substr(0, 20) + "... (" + thousands(token.size()) + " characters)";
}

// nlohmann's DOM parser behind a SAX filter: depth, 64-bit integers and finite numbers checked
// as the document streams in, so nothing out of bounds is ever built.
class BoundedSax {
 public:
  BoundedSax(json& out, const std::string& text) : dom_(out, false), text_(text) {}
  std::string error;
  std::string repeated;  // the first key found twice in one object (reported once the rest parsed)

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) {
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return out_of_range(std::to_string(v));
    return dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const std::string& token) {
    // an integer too long for 64 bits arrives here as a double: refused, as Python's parse_int does
    if (token.find_first_of(".eE") == std::string::npos) return out_of_range(token);
    return dom_.number_float(v, token);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool key(std::string& k) {
    Keys& keys = objects_.back();
    if (!keys.seen.insert(k).second && keys.repeated.empty()) keys.repeated = k;
    return dom_.key(k);
  }
  bool start_object(std::size_t n) {
    objects_.emplace_back();
    return deeper() && dom_.start_object(n);
  }
  bool end_object() {
    if (repeated.empty()) repeated = objects_.back().repeated;  // the first, objects in the order they close
    objects_.pop_back();
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return deeper() && dom_.start_array(n); }
  bool end_array() { --depth_; return dom_.end_array(); }
  bool parse_error(std::size_t position, const std::string& token, const nlohmann::detail::exception& e) {
    const std::string constant = constant_at(position);
    error = e.id == 406 ? "number " + shown_token(token) + " is out of range"  // 406: overflow
            : !constant.empty() ? constant + " is not a JSON number"        // Python's json reads these, then refuses
                                : e.what();
    return false;
  }

 private:
  bool deeper() {
    if (++depth_ <= limits().max_json_depth) return true;
    error = "nested deeper than " + std::to_string(limits().max_json_depth) + " levels";
    return false;
  }
  // NaN, Infinity or -Infinity where the lexer stopped (`position`: just past the character it
  // could not read), or "".
  std::string constant_at(std::size_t position) const {
    for (const char* c : {"-Infinity", "Infinity", "NaN"}) {
      for (std::size_t back : {2, 1}) {
        if (position >= back && text_.compare(position - back, std::strlen(c), c) == 0) return c;
      }
    }
    return "";
  }
  bool out_of_range(const std::string& token) {
    error = "number " + shown_token(token) + " is out of range";
    return false;
  }
  struct Keys {
    std::set<std::string> seen;
    std::string repeated;
  };
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  const std::string& text_;
  std::vector<Keys> objects_;  // the keys of every object still open
  int depth_ = 0;
};

}  // namespace

json parse_json(const std::string& text) {
  json out;
  BoundedSax sax(out, text);
  if (!json::sax_parse(text, &sax)) throw std::invalid_argument(sax.error);
  if (!sax.repeated.empty()) throw std::invalid_argument("key " + py_repr(sax.repeated) + " appears twice in one object");
  return out;
}

std::vector<std::string> validate(const json& doc, const Schema& schema) {
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

namespace {

// A bound's text as pydantic prints it: 60.0 as 60, 0.5 as 0.5.
std::string bound_text(const json& v) {
  if (v.is_number_float() && std::nearbyint(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 1e15) {
    return std::to_string(static_cast<long long>(v.get<double>()));
  }
  return v.dump();
}

// Rules from the JSON schema pydantic emits for BundleManifest (deploy/bundle_limits.py keeps to
// the keywords read here and refuses the others, so no rule of the Python schema is dropped).
class SchemaReader {
 public:
  explicit SchemaReader(const json& root) : defs_(root.at("$defs")) {}

  // The fields of an object schema: one rule per property, required unless it has a default.
  Schema fields(const json& obj) {
    const json none = json::array();
    const json& required = obj.contains("required") ? obj.at("required") : none;
    Schema out;
    for (const auto& [key, property] : obj.at("properties").items()) {
      Rule r = rule(key, property);
      r.required = std::find(required.begin(), required.end(), key) != required.end();
      out.push_back(std::move(r));
    }
    return out;
  }

  const Schema& model(const std::string& name) {
    auto& slot = models_[name];
    if (!slot) {
      slot = std::make_unique<Schema>();
      *slot = fields(defs_.at(name));
    }
    return *slot;
  }

 private:
  Rule rule(const std::string& key, const json& s) {
    if (s.contains("$ref")) {
      Rule r;
      r.key = key;
      r.kind = Kind::Obj;
      r.fields = &model(s.at("$ref").get<std::string>().substr(std::string("#/$defs/").size()));
      return r;
    }
    if (s.contains("anyOf")) return any_of(key, s.at("anyOf"));
    Rule r;
    r.key = key;
    const std::string type = s.at("type");
    if (type == "string") {
      r.kind = Kind::Str;
      if (s.contains("enum")) r.literal = s.at("enum").get<std::vector<std::string>>();
      if (s.contains("const")) r.literal = {s.at("const").get<std::string>()};
      r.min_length = s.value("minLength", size_t{0});
      r.pattern = s.value("pattern", "");
      r.file_name = s.value("format", "") == limits().file_name_format;
    } else if (type == "integer" || type == "number") {
      r.kind = type == "integer" ? Kind::Int : Kind::Num;
      r.bounds = bounds(s);
    } else if (type == "boolean") {
      r.kind = Kind::Bool;
    } else if (type == "array") {
      r.kind = Kind::List;
      r.item = std::make_shared<Rule>(rule("", s.at("items")));
      r.min_items = s.value("minItems", size_t{0});
    } else if (type == "object" && !s.contains("properties")) {  // a dict; models are $defs
      r.kind = Kind::Map;
      const json& item = s.value("additionalProperties", json(true));
      r.item = std::make_shared<Rule>(item.is_object() ? rule("", item) : Rule{});
      r.file_name = s.contains("propertyNames") && s.at("propertyNames").value("format", "") == limits().file_name_format;
    } else {
      throw std::logic_error("bundle_limits.json: key `" + key + "` has a schema the C++ loader does not read: " + s.dump());
    }
    return r;
  }

  // X | None (nullable X), and int | str (a tensor axis).
  Rule any_of(const std::string& key, const json& members) {
    json rest = json::array();
    bool nullable = false;
    for (const json& m : members) {
      if (m.value("type", "") == "null") {
        nullable = true;
      } else {
        rest.push_back(m);
      }
    }
    Rule r;
    if (rest.size() == 1) {
      r = rule(key, rest[0]);
    } else if (rest.size() == 2 && rest[0].value("type", "") == "integer" && rest[1].value("type", "") == "string" &&
               rest[1].size() == 1) {
      r.key = key;
      r.kind = Kind::Dim;
      r.bounds = bounds(rest[0]);
    } else {
      throw std::logic_error("bundle_limits.json: key `" + key + "`: a union the C++ loader does not read: " +
                             members.dump());
    }
    r.nullable = nullable;
    return r;
  }

  static std::vector<Bound> bounds(const json& s) {
    static const std::vector<std::pair<const char*, Bound::Op>> keywords = {
        {"exclusiveMinimum", Bound::Gt}, {"minimum", Bound::Ge}, {"exclusiveMaximum", Bound::Lt}, {"maximum", Bound::Le}};
    std::vector<Bound> out;
    for (const auto& [keyword, op] : keywords) {
      if (s.contains(keyword)) out.push_back(Bound{op, s.at(keyword).get<double>(), bound_text(s.at(keyword))});
    }
    return out;
  }

  const json& defs_;
  std::map<std::string, std::unique_ptr<Schema>> models_;
};

SchemaReader& reader() {
  static SchemaReader r(limits().manifest_schema);
  return r;
}

}  // namespace

const Schema& manifest_schema() {
  static const Schema schema = reader().fields(limits().manifest_schema);
  return schema;
}

std::vector<std::string> model_fields(const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [key, property] : limits().manifest_schema.at("$defs").at(name).at("properties").items()) {
    out.push_back(key);
  }
  return out;
}

}  // namespace at2seld::detail
