// The bundle's rules as the Python schema states them, read from the JSON that
// deploy/bundle_limits.py generates (src/bundle_limits.json, embedded at build time): the
// manifest's JSON schema and the limits both loaders share. Nothing here is a hand copy.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace at2seld::detail {

struct BundleLimits {
  std::string format;            // the manifest's format string
  std::string manifest;          // its file name in the bundle
  std::string file_name_format;  // the JSON schema's "format" of a plain relative file name
  uint64_t max_manifest_bytes = 0;
  int max_json_depth = 0;
  uint64_t max_state_bytes = 0;
  uint64_t max_golden_bytes = 0;
  std::vector<std::string> golden_keys;                               // sorted
  std::map<std::string, std::vector<std::string>> golden_tolerances;  // precision -> tolerance keys
  std::map<std::string, int> onnx_dtypes;                             // manifest dtype -> TensorProto type
  std::vector<std::string> qdq_ops, standard_domains, engine_tags;
  std::map<std::string, std::string> engine_titles;  // builder -> its name in messages
  nlohmann::ordered_json manifest_schema;           // BundleManifest.model_json_schema(), keys in field order
};

// Parsed once, on first use.
const BundleLimits& limits();

}  // namespace at2seld::detail
