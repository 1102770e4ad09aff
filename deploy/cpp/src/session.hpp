// One graph of a bundle run by one backend: float32 feeds by name in, float32 outputs by name
// out. Backends are looked up by Backend in backend_registry() (runtime.cpp).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld::detail {

struct Feed {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

class GraphSession {
 public:
  virtual ~GraphSession() = default;
  virtual const std::string& name() const = 0;  // "onnxruntime (CPUExecutionProvider)", "tensorrt 10.3.0"
  virtual std::map<std::string, Tensor> run(const std::vector<Feed>& feeds) = 0;
};

struct SessionRequest {
  const std::filesystem::path& root;
  const Manifest& manifest;
  const std::string& graph;  // the ONNX file the session runs (the engine stands for manifest.model)
  const Options& options;
};

using SessionFactory = std::unique_ptr<GraphSession> (*)(const SessionRequest&);

std::unique_ptr<GraphSession> make_onnxruntime_session(const SessionRequest& request);
#ifdef AT2SELD_WITH_TENSORRT
std::unique_ptr<GraphSession> make_tensorrt_session(const SessionRequest& request);
#endif

}  // namespace at2seld::detail
