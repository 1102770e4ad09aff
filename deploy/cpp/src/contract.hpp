// Does a bundle's manifest describe its files (deploy/contract.py)? The ONNX graphs' inputs and
// outputs (names, ranks, element types, static dims), Q/DQ nodes exactly when the precision is
// INT8, graphs that hold their own weights, a stream graph whose inputs and outputs are exactly
// the hop of audio, the frame and the manifest's states (all fixed), golden arrays of the
// promised shapes; read with Debian's libonnx protobuf classes and libzip, before anything in
// the bundle runs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld::detail {

std::vector<std::string> contract_problems(const std::filesystem::path& root, const Manifest& m);

}  // namespace at2seld::detail
