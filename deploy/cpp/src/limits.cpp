#include "limits.hpp"

namespace at2seld::detail {
namespace {

// The generated JSON, as a raw string literal (CMake writes bundle_limits.inc from it).
const char* const kBundleLimitsJson =
#include "bundle_limits.inc"
    ;

BundleLimits parse() {
  const auto j = nlohmann::ordered_json::parse(kBundleLimitsJson);
  BundleLimits l;
  l.format = j.at("format");
  l.manifest = j.at("manifest");
  l.file_name_format = j.at("file_name_format");
  l.max_manifest_bytes = j.at("max_manifest_bytes");
  l.max_json_depth = j.at("max_json_depth");
  l.max_state_bytes = j.at("max_state_bytes");
  l.max_golden_bytes = j.at("max_golden_bytes");
  l.golden_keys = j.at("golden_keys").get<std::vector<std::string>>();
  for (const auto& [precision, keys] : j.at("golden_tolerances").items()) {
    l.golden_tolerances[precision] = keys.get<std::vector<std::string>>();
  }
  for (const auto& [dtype, code] : j.at("onnx_dtypes").items()) l.onnx_dtypes[dtype] = code;
  l.qdq_ops = j.at("qdq_ops").get<std::vector<std::string>>();
  l.standard_domains = j.at("standard_domains").get<std::vector<std::string>>();
  l.engine_tags = j.at("engine_tags").get<std::vector<std::string>>();
  for (const auto& [builder, title] : j.at("engine_titles").items()) l.engine_titles[builder] = title;
  l.manifest_schema = j.at("manifest_schema");
  return l;
}

}  // namespace

const BundleLimits& limits() {
  static const BundleLimits l = parse();
  return l;
}

}  // namespace at2seld::detail
