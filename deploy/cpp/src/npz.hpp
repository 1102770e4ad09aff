// golden.npz: numpy's zip of .npy arrays, read with libzip. Only the data of little-endian
// float32 C-order arrays is ever read (what the golden file holds); an object (pickled) array's
// bytes are never looked at, as numpy's allow_pickle=False.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace at2seld::detail {

struct NpyArray {
  std::string dtype;  // numpy's name: "float32", "float64", ..., "object"
  std::vector<int64_t> shape;
  std::vector<float> data;  // float32 arrays only, and only when asked for
  uint64_t zip_bytes = 0;  // the member's uncompressed size, as the zip's directory declares it
  int itemsize = 0;        // bytes per element (0: unknown dtype)
  std::string shape_text() const;  // as Python prints a shape tuple: (3, 4, 24000)
  double bytes() const;            // what the header's shape declares (in double: a forged shape cannot overflow)
};

// Every array of the file by name (without ".npy"); with `with_data` false only the headers (no
// array data is read before its size is checked against what the caller expects).
std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path, bool with_data = true);

}  // namespace at2seld::detail
