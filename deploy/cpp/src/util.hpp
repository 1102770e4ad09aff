// Small shared helpers: atomic writes, sha256 (OpenSSL), formatting.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace at2seld::detail {

// Writes `text` to a temporary file beside `path` and renames it onto `path`: a reader never
// sees half a file (as at2seld_edge.io.atomic_write_text). Throws Error naming the path.
void atomic_write_text(const std::filesystem::path& path, const std::string& text);

std::string sha256_file(const std::filesystem::path& path);
std::string read_text(const std::filesystem::path& path);

// printf-style formatting into a std::string (for Python's f-string number formats).
template <typename... Args>
std::string format(const char* fmt, Args... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), fmt, args...);
  out.resize(static_cast<size_t>(n));
  return out;
}

// A GitHub-flavoured Markdown table, as io.markdown_table writes them.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// numpy.percentile's default (linear) of unsorted `values` (not empty), q in [0, 100].
double percentile(std::vector<double> values, double q);

// Python's repr() of a str, as the Python messages show names ('x').
std::string py_repr(const std::string& s);

// A shape as Python prints the tuple: (1, 10, 3, 8), (3,).
std::string shape_text(const std::vector<int64_t>& shape);

// `text` with every run of whitespace (newlines too) one space, as runtime.py's _one_line.
std::string one_line(const std::string& text);

// Python's f"{n:,}".
std::string thousands(uintmax_t n);

}  // namespace at2seld::detail
