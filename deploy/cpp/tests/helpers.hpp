// Shared by the tests: the fixture bundles (copied before a test changes them), manifest edits,
// a .npz writer, and running a command to get its exit code and output.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "at2seld/runtime.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace testing_helpers {

inline fs::path fixture(const std::string& name) { return fs::path(AT2SELD_FIXTURES) / name; }

inline fs::path fixture_wav() {
  for (const auto& e : fs::recursive_directory_iterator(fixture("ds"))) {
    if (e.path().extension() == ".wav") return e.path();
  }
  throw std::runtime_error("no wav under " + fixture("ds").string());
}

// A fresh scratch folder for the running test.
inline fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name) c = (c == '/') ? '_' : c;
  fs::path dir = fs::path(::testing::TempDir()) / "at2seld" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A copy of a fixture bundle a test may damage.
inline fs::path copy_bundle(const std::string& precision = "fp32") {
  fs::path dst = scratch() / precision;
  fs::copy(fixture(precision), dst, fs::copy_options::recursive);
  return dst;
}

inline json read_manifest(const fs::path& bundle) {
  std::ifstream in(bundle / "manifest.json");
  return json::parse(in);
}

inline void edit_manifest(const fs::path& bundle, const std::function<void(json&)>& edit) {
  json m = read_manifest(bundle);
  edit(m);
  std::ofstream(bundle / "manifest.json") << m.dump(2);
}

struct Result {
  int code;
  std::string out, err;
};

// Runs `command` through the shell; stdout and stderr captured.
inline Result run(const std::string& command) {
  static int calls = 0;
  fs::path err_file = fs::temp_directory_path() / ("at2seld-test-stderr-" + std::to_string(::getpid()) + "-" +
                                                   std::to_string(++calls));
  FILE* pipe = popen((command + " 2>" + err_file.string()).c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  std::stringstream err;
  err << std::ifstream(err_file).rdbuf();
  fs::remove(err_file);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, err.str()};
}

inline std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// The message of the exception `f` throws (or "" when it throws none).
template <typename F>
at2seld::Error error_of(F&& f) {
  try {
    f();
  } catch (const at2seld::Error& e) {
    return e;
  }
  return at2seld::Error("");
}

}  // namespace testing_helpers
