// TensorRT through its C++ API (8.5+ and 10.x share the name-based tensor calls): the bundle's
// serialized engine, refused when built with another TensorRT version or for another GPU (as
// the manifest records them); the optimization profile's range for the dynamic time axis; one
// CUDA stream, pinned host buffers and asynchronous copies. Compiled only where CMake finds
// TensorRT and the CUDA runtime.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "session.hpp"
#include "util.hpp"

namespace at2seld::detail {
namespace {

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status), ErrorKind::Check);
  }
}

class Logger final : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "TensorRT: " << msg << "\n";
  }
};

// "major.minor.patch" of the linked TensorRT (getInferLibVersion: 8.x M*1000+m*100+p, 10.x M*10000+m*100+p).
std::string tensorrt_version() {
  int v = getInferLibVersion();
  int major = v < 10000 ? v / 1000 : v / 10000;
  int minor = v < 10000 ? (v / 100) % 10 : (v / 100) % 100;
  return format("%d.%d.%d", major, minor, v % 100);
}

// The manifest's version ("10.3.0" or "10.3.0.30") names this TensorRT when the components both have agree.
bool same_version(const std::string& recorded, const std::string& here) {
  size_t n = std::min(recorded.size(), here.size());
  return recorded.compare(0, n, here, 0, n) == 0 && (recorded.size() <= n || recorded[n] == '.') &&
         (here.size() <= n || here[n] == '.');
}

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};

// A device buffer and its pinned host twin, grown on demand.
struct Buffer {
  std::unique_ptr<void, CudaFree> device;
  std::unique_ptr<void, HostFree> host;
  size_t bytes = 0;

  void reserve(size_t need) {
    if (need <= bytes) return;
    void *d = nullptr, *h = nullptr;
    cuda_check(cudaMalloc(&d, need), "cudaMalloc");
    device.reset(d);
    cuda_check(cudaMallocHost(&h, need), "cudaMallocHost");
    host.reset(h);
    bytes = need;
  }
};

class TensorRTSession final : public GraphSession {
 public:
  // `engine_file`: the model graph's engine, or the stream graph's (built beside it, so the same
  // version and GPU record holds for both).
  TensorRTSession(const SessionRequest& r, const std::string& engine_file) {
    const EngineInfo& info = *r.manifest.engine;
    path_ = r.root / engine_file;
    std::string here = tensorrt_version();
    if (!same_version(info.tensorrt_version, here)) {
      throw Error(path_.string() + ": built with TensorRT " + info.tensorrt_version + ", this is TensorRT " + here +
                  "; rebuild it here with `edge build`");
    }
    check_gpu(info);
    std::ifstream in(path_, std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    engine_.reset(runtime_ ? runtime_->deserializeCudaEngine(blob.data(), blob.size()) : nullptr);
    if (!engine_) throw Error(path_.string() + ": not an engine this TensorRT " + here + " can load");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path_.string() + ": TensorRT cannot make an execution context for it", ErrorKind::Check);
    cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    if (engine_->getNbOptimizationProfiles() > 0) context_->setOptimizationProfileAsync(0, stream_);
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT) {
        throw Error(path_.string() + ": tensor " + name + " is not float32; the runtime feeds and reads float32");
      }
      if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) outputs_.push_back(name);
    }
    name_ = "tensorrt " + here;
  }

  ~TensorRTSession() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  const std::string& name() const override { return name_; }

  std::map<std::string, Tensor> run(const std::vector<Feed>& feeds) override {
    for (const Feed& f : feeds) {
      nvinfer1::Dims dims{};
      dims.nbDims = static_cast<int>(f.shape.size());
      size_t n = 1;
      for (size_t k = 0; k < f.shape.size(); ++k) n *= static_cast<size_t>(dims.d[k] = f.shape[k]);
      check_profile(f.name.c_str(), dims);
      if (!context_->setInputShape(f.name.c_str(), dims)) {
        throw Error(path_.string() + ": TensorRT refused input shape for " + f.name, ErrorKind::Usage);
      }
      Buffer& b = buffers_[f.name];
      b.reserve(n * sizeof(float));
      std::memcpy(b.host.get(), f.data, n * sizeof(float));
      cuda_check(cudaMemcpyAsync(b.device.get(), b.host.get(), n * sizeof(float), cudaMemcpyHostToDevice, stream_),
                 "copy to device");
      if (!context_->setTensorAddress(f.name.c_str(), b.device.get())) {
        throw Error(path_.string() + ": the engine has no input " + f.name, ErrorKind::Check);
      }
    }
    // Each output buffer is sized by the shape the execution context resolves for these inputs,
    // never by what the manifest declares; one it cannot resolve is refused.
    std::map<std::string, Tensor> out;
    for (const std::string& name : outputs_) {
      nvinfer1::Dims dims = context_->getTensorShape(name.c_str());
      Tensor& o = out[name];
      double n = 1;
      bool unresolved = dims.nbDims < 0;  // -1 axes: data-dependent, or the inputs did not fix them
      for (int k = 0; k < dims.nbDims; ++k) {
        o.shape.push_back(dims.d[k]);
        unresolved = unresolved || dims.d[k] < 0;
        n *= static_cast<double>(dims.d[k]);
      }
      if (unresolved || n * sizeof(float) > static_cast<double>(size_t{1} << 40)) {
        throw Error(path_.string() + ": TensorRT gives output " + name + " the shape " + shape_text(o.shape) +
                    " for these inputs; the runtime cannot size it", ErrorKind::Check);
      }
      o.data.resize(static_cast<size_t>(n));
      Buffer& b = buffers_[name];
      b.reserve(std::max<size_t>(o.data.size() * sizeof(float), 1));
      context_->setTensorAddress(name.c_str(), b.device.get());
    }
    if (!context_->enqueueV3(stream_)) throw Error("TensorRT execution failed", ErrorKind::Check);
    for (auto& [name, o] : out) {
      Buffer& b = buffers_[name];
      cuda_check(cudaMemcpyAsync(b.host.get(), b.device.get(), o.data.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                 stream_), "copy to host");
    }
    cuda_check(cudaStreamSynchronize(stream_), "stream synchronize");
    for (auto& [name, o] : out) std::memcpy(o.data.data(), buffers_[name].host.get(), o.data.size() * sizeof(float));
    return out;
  }

 private:
  void check_gpu(const EngineInfo& info) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw Error("TensorRT engines need a CUDA GPU, and none is visible", ErrorKind::Usage);
    }
    cudaDeviceProp props{};
    cuda_check(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties");
    std::string gpu = props.name, cc = format("%d.%d", props.major, props.minor);
    if (gpu != info.gpu_name || cc != info.compute_capability) {
      throw Error(path_.string() + ": built for " + info.gpu_name + " (compute " + info.compute_capability +
                  "), this GPU is " + gpu + " (compute " + cc + "); rebuild it here with `edge build`");
    }
  }

  // The dynamic time axis must lie in the engine's optimization profile.
  void check_profile(const char* name, const nvinfer1::Dims& dims) {
    if (engine_->getNbOptimizationProfiles() == 0) return;
    auto lo = engine_->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMIN);
    auto hi = engine_->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMAX);
    for (int k = 0; k < dims.nbDims && k < lo.nbDims && k < hi.nbDims; ++k) {
      if (dims.d[k] < lo.d[k] || dims.d[k] > hi.d[k]) {
        throw Error(format("%s: input %s dim %d of %lld is outside the engine's optimization profile [%lld, %lld]",
                           path_.c_str(), name, k, static_cast<long long>(dims.d[k]),
                           static_cast<long long>(lo.d[k]), static_cast<long long>(hi.d[k])),
                    ErrorKind::Usage);
      }
    }
  }

  std::filesystem::path path_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::map<std::string, Buffer> buffers_;
  std::string name_;
  std::vector<std::string> outputs_;
};

}  // namespace

std::unique_ptr<GraphSession> make_tensorrt_session(const SessionRequest& request) {
  const Manifest& m = request.manifest;
  if (m.stream && request.graph == m.stream->graph) {
    if (!m.engine || !m.stream->engine) {
      throw Error(request.root.string() + ": no TensorRT engine for the stream graph " + request.graph + " in this "
                  "bundle: run `edge build` on the device, or use --backend onnxruntime", ErrorKind::Usage);
    }
    if (m.engine->builder != "tensorrt") {
      throw Error(request.root.string() + ": its engines were built by " + m.engine->builder +
                  ", which this runtime's TensorRT cannot load; use --backend onnxruntime", ErrorKind::Usage);
    }
    return std::make_unique<TensorRTSession>(request, *m.stream->engine);
  }
  if (!request.manifest.engine || request.graph != request.manifest.model) {
    throw Error(request.root.string() + ": no TensorRT engine for " + request.graph + " in this bundle (built where "
                "TensorRT was absent): run `edge build` on the device, or use --backend onnxruntime",
                ErrorKind::Usage);
  }
  if (request.manifest.engine->builder != "tensorrt") {
    throw Error(request.root.string() + ": its engine was built by " + request.manifest.engine->builder +
                ", which this runtime's TensorRT cannot load; use --backend onnxruntime", ErrorKind::Usage);
  }
  return std::make_unique<TensorRTSession>(request, m.engine->file);
}

}  // namespace at2seld::detail
