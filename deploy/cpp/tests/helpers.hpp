// Shared by the tests: the fixture bundles (copied before a test changes them), manifest and
// graph edits, a .npz writer, and running a command to get its exit code and output.
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "at2seld/runtime.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // a manifest edited keeps its keys' order, as Python's json does

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

inline std::string sha256_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

// Records `name`'s current bytes in the manifest, as a rebuilt bundle would.
inline void rehash(const fs::path& bundle, const std::string& name) {
  edit_manifest(bundle, [&](json& m) {
    m["files"][name] = {{"sha256", sha256_of(bundle / name)}, {"bytes", fs::file_size(bundle / name)}};
  });
}

// Edits the ONNX graph `name` of a bundle and records its new bytes, as someone who tampers
// with a bundle and rehashes it would.
inline void edit_graph(const fs::path& bundle, const std::string& name, const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto model;
  {
    std::ifstream in(bundle / name, std::ios::binary);
    ASSERT_TRUE(model.ParseFromIstream(&in)) << name;
  }
  edit(model);
  {
    std::ofstream out(bundle / name, std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(model.SerializeToOstream(&out)) << name;
  }
  rehash(bundle, name);
}

// A .npz of float32 arrays with the given shapes (data zero), or a raw header for `descr`;
// `header_only`: the members stop after their .npy headers (what the shapes declare is not there).
inline void write_npz(const fs::path& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& arrays,
                      const std::string& descr = "<f4", bool header_only = false) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  std::vector<std::string> blobs;
  blobs.reserve(arrays.size());
  for (const auto& [name, shape] : arrays) {
    std::string dims;
    size_t n = 1;
    for (int64_t d : shape) {
      dims += std::to_string(d) + ", ";
      n *= static_cast<size_t>(d);
    }
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    header += std::string(63 - (10 + header.size()) % 64, ' ') + "\n";
    std::string blob = std::string("\x93NUMPY\x01\x00", 8);
    blob += static_cast<char>(header.size() & 0xff);
    blob += static_cast<char>(header.size() >> 8);
    blob += header + std::string(header_only ? 0 : n * 4, '\0');
    blobs.push_back(blob);
    zip_source_t* src = zip_source_buffer(z, blobs.back().data(), blobs.back().size(), 0);
    zip_file_add(z, (name + ".npy").c_str(), src, ZIP_FL_OVERWRITE);
  }
  zip_close(z);
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

// "error: MESSAGE\n" -> MESSAGE (both CLIs print one such line).
inline std::string error_line(const std::string& err) {
  auto at = err.find("error: ");
  if (at == std::string::npos) return "(no error line in: " + err + ")";
  return err.substr(at + 7, err.find('\n', at) - at - 7);
}

inline std::string read_file(const fs::path& p) {
  std::stringstream ss;
  ss << std::ifstream(p, std::ios::binary).rdbuf();
  return ss.str();
}

// The venv's python, beside the edge CLI the tests run.
inline std::string venv_python() { return (fs::path(AT2SELD_EDGE).parent_path() / "python").string(); }

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
