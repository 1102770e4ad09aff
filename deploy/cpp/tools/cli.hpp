// The command-line plumbing the at2seld-* tools share: `--name value` options, the backend and
// device choices `edge` takes, and one error line with edge's exit codes instead of a crash.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld::cli {

// A malformed command line: the tool prints its usage line after the message.
struct ArgError : Error {
  explicit ArgError(const std::string& message) : Error(message, ErrorKind::Usage) {}
};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // "--bundle" -> value; flags -> ""

  bool has(const std::string& name) const { return options.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  std::string required(const std::string& name) const {
    if (!has(name)) throw ArgError("missing option " + name);
    return get(name);
  }
  int integer(const std::string& name, int fallback) const {
    if (!has(name)) return fallback;
    try {
      size_t used = 0;
      int v = std::stoi(get(name), &used);
      if (used == get(name).size()) return v;
    } catch (const std::exception&) {
    }
    throw ArgError(name + " " + get(name) + ": not an integer");
  }
};

struct Tool {
  std::string usage;                      // the one-line synopsis
  std::set<std::string> value_options;    // options that take a value
  std::set<std::string> flags;            // options without one
  std::function<int(const Args&)> main;
};

inline Args parse(int argc, char** argv, const Tool& tool) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (tool.value_options.count(s)) {
      if (i + 1 >= argc) throw ArgError("option " + s + " needs a value");
      a.options[s] = argv[++i];
    } else if (tool.flags.count(s)) {
      a.options[s] = "";
    } else if (s.rfind("--", 0) == 0) {
      throw ArgError("no such option: " + s);
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

// --backend and --device as `edge` spells them.
inline Options runtime_options(const Args& a) {
  static const std::map<std::string, Backend> backends = {
      {"auto", Backend::Auto}, {"onnxruntime", Backend::OnnxRuntime}, {"tensorrt", Backend::TensorRT}};
  static const std::map<std::string, Device> devices = {{"auto", Device::Auto}, {"cpu", Device::Cpu}, {"cuda", Device::Cuda}};
  Options o;
  std::string backend = a.get("--backend", "auto"), device = a.get("--device", "auto");
  if (!backends.count(backend)) {
    throw ArgError("--backend " + backend + ": expected auto, onnxruntime or tensorrt");
  }
  if (!devices.count(device)) throw ArgError("--device '" + device + "': expected auto, cpu or cuda");
  o.backend = backends.at(backend);
  o.device = devices.at(device);
  return o;
}

namespace fs = std::filesystem;

// The nearest existing folder above `path` must be writable (io.check_writable_parent).
inline void check_writable_parent(const fs::path& path) {
  std::error_code ec;
  fs::path parent = path.parent_path().empty() ? "." : path.parent_path();
  while (!fs::exists(parent, ec)) parent = parent.parent_path().empty() ? "." : parent.parent_path();
  if (!fs::is_directory(parent, ec)) throw Error(path.string() + ": " + parent.string() + " is a file, not a folder");
  if (access(parent.c_str(), W_OK | X_OK) != 0) {
    throw Error(path.string() + ": cannot write in " + parent.string() + " (permission denied)");
  }
}

// A folder with a manifest.json of a deployment bundle's format, any version (io.is_bundle).
inline bool is_bundle(const fs::path& folder) {
  std::error_code ec;
  fs::path manifest = folder / "manifest.json";
  if (!fs::is_regular_file(manifest, ec) || fs::file_size(manifest, ec) > (16u << 20)) return false;
  std::stringstream text;
  text << std::ifstream(manifest, std::ios::binary).rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (!j.is_object() || !j.contains("format") || !j.at("format").is_string()) return false;
  return j.at("format").get<std::string>().rfind("at2seld-edge.bundle/", 0) == 0;
}

// An output inside a bundle, or the bundle folder itself, is refused (io.check_not_in_bundle): a
// bundle holds only what its manifest lists, so a report written there would fail its integrity
// check. A usage error: the path alone is wrong.
inline void check_not_in_bundle(const fs::path& path) {
  std::error_code ec;
  fs::path full = fs::weakly_canonical(fs::absolute(path, ec), ec);
  for (fs::path folder = full;; folder = folder.parent_path()) {
    if (is_bundle(folder)) {
      throw Error(path.string() + ": inside the bundle " + folder.string() + "; a bundle holds only what its manifest "
                  "lists: write outputs outside it", ErrorKind::Usage);
    }
    if (folder == folder.parent_path()) break;
  }
}

// An output file that is a folder, lies in a bundle or cannot be written is refused before any
// work (io.check_output_file).
inline void check_output_file(const fs::path& path) {
  std::error_code ec;
  check_not_in_bundle(path);
  if (fs::is_directory(path, ec)) throw Error(path.string() + ": is a folder; give a file name");
  check_writable_parent(path);
}

// An output folder that is a file, lies in a bundle, or holds something other than an earlier
// output of the same kind (`is_ours`), is refused before any work (io.check_output_dir).
inline void check_output_dir(const fs::path& out, const std::function<bool(const fs::path&)>& is_ours,
                             const std::string& what) {
  std::error_code ec;
  check_not_in_bundle(out);
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
    throw Error(out.string() + ": exists and is not a folder; give another --out");
  }
  if (fs::is_directory(out, ec) && !fs::is_empty(out, ec) && !is_ours(out)) {
    throw Error(out.string() + ": exists, is not empty and is not a " + what + "; give another --out");
  }
  check_writable_parent(out);
}

inline int run(int argc, char** argv, const Tool& tool) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << "usage: " << tool.usage << "\n";
      return 0;
    }
  }
  try {
    return tool.main(parse(argc, argv, tool));
  } catch (const ArgError& e) {
    std::cerr << "error: " << e.what() << "\nusage: " << tool.usage << "\n";
    return e.exit_code();
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace at2seld::cli
