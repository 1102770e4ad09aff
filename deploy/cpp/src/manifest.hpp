// The bundle's manifest.json, loaded as deploy/bundle.py's load_bundle does, with its messages:
// format, schema and bounds, toolkit major version; plain relative file names inside the bundle,
// every file hashed and matching, nothing unlisted; then the contract (contract.hpp).
#pragma once

#include <filesystem>

#include "at2seld/runtime.hpp"

namespace at2seld::detail {

extern const char* const kToolkitVersion;  // at2seld_edge.__version__, from CMake

Manifest load_manifest(const std::filesystem::path& root);

}  // namespace at2seld::detail
