// ONNX Runtime through its C++ API. The headers (Debian's libonnxruntime-dev) may be older than
// the library (the onnxruntime wheel's): the API table is taken at the headers' version, which
// every newer library still serves, and a library too old for it is refused by name.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <mutex>

#include "session.hpp"
#include "util.hpp"

namespace at2seld::detail {
namespace {

void init_api() {
  static std::once_flag once;
  static const OrtApi* api = nullptr;
  std::call_once(once, [] {
    api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (api) Ort::InitApi(api);
  });
  if (!api) {
    throw Error(format("libonnxruntime %s does not serve ONNX Runtime API version %d (the headers this was built "
                       "with); link a newer onnxruntime", OrtGetApiBase()->GetVersionString(), ORT_API_VERSION));
  }
}

Ort::Env& env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "at2seld");
  return env;
}

// First member of the session, so the API table is set before any Ort object is made.
struct ApiInit {
  ApiInit() { init_api(); }
};

class OnnxRuntimeSession final : public GraphSession {
 public:
  explicit OnnxRuntimeSession(const SessionRequest& r) : path_(r.root / r.graph) {
    Ort::SessionOptions so;
    so.SetLogSeverityLevel(3);
    if (r.options.intra_op_threads > 0) so.SetIntraOpNumThreads(r.options.intra_op_threads);
    std::string provider = "CPUExecutionProvider";
    auto available = Ort::GetAvailableProviders();
    bool has_cuda = std::find(available.begin(), available.end(), "CUDAExecutionProvider") != available.end();
    if (r.options.device == Device::Cuda && !has_cuda) {
      throw Error("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)", ErrorKind::Usage);
    }
    try {
      if (r.options.device != Device::Cpu && has_cuda) {
        OrtCUDAProviderOptionsV2* cuda = nullptr;
        Ort::ThrowOnError(Ort::GetApi().CreateCUDAProviderOptions(&cuda));
        std::unique_ptr<OrtCUDAProviderOptionsV2, void (*)(OrtCUDAProviderOptionsV2*)> owned(
            cuda, Ort::GetApi().ReleaseCUDAProviderOptions);
        so.AppendExecutionProvider_CUDA_V2(*cuda);
        provider = "CUDAExecutionProvider";
      }
      session_ = Ort::Session(env(), path_.c_str(), so);
    } catch (const Ort::Exception& e) {
      throw Error(path_.string() + ": ONNX Runtime cannot load it (" + one_line(e.what()) + ")");
    }
    name_ = "onnxruntime (" + provider + ")";
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < session_.GetOutputCount(); ++i) outputs_.push_back(session_.GetOutputNameAllocated(i, alloc).get());
    for (const std::string& name : outputs_) output_names_.push_back(name.c_str());
  }

  const std::string& name() const override { return name_; }

  std::map<std::string, Tensor> run(const std::vector<Feed>& feeds) override {
    std::vector<const char*> names;
    std::vector<Ort::Value> values;
    for (const Feed& f : feeds) {
      size_t n = 1;
      for (int64_t d : f.shape) n *= static_cast<size_t>(d);
      names.push_back(f.name.c_str());
      values.push_back(Ort::Value::CreateTensor<float>(memory_, const_cast<float*>(f.data), n, f.shape.data(),
                                                       f.shape.size()));
    }
    std::vector<Ort::Value> got;
    try {
      got = session_.Run(run_options_, names.data(), values.data(), values.size(), output_names_.data(),
                         output_names_.size());
    } catch (const Ort::Exception& e) {
      throw Error(path_.string() + ": ONNX Runtime failed to run it (" + one_line(e.what()) + ")", ErrorKind::Check);
    }
    // Each output is copied by the type and element count of the tensor ONNX Runtime returned,
    // never by what the graph or the manifest declares.
    std::map<std::string, Tensor> out;
    for (size_t i = 0; i < got.size(); ++i) {
      if (!got[i].IsTensor()) throw Error(path_.string() + ": output " + outputs_[i] + " is not a tensor", ErrorKind::Check);
      auto info = got[i].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        throw Error(format("%s: output %s came back as element type %d, not float32", path_.c_str(), outputs_[i].c_str(),
                           static_cast<int>(info.GetElementType())), ErrorKind::Check);
      }
      const float* data = got[i].GetTensorData<float>();
      out[outputs_[i]] = Tensor{info.GetShape(), std::vector<float>(data, data + info.GetElementCount())};
    }
    return out;
  }

 private:
  ApiInit api_init_;
  std::filesystem::path path_;
  Ort::Session session_{nullptr};
  Ort::RunOptions run_options_;
  Ort::MemoryInfo memory_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::string name_;
  std::vector<std::string> outputs_;
  std::vector<const char*> output_names_;
};

}  // namespace

std::unique_ptr<GraphSession> make_onnxruntime_session(const SessionRequest& request) {
  return std::make_unique<OnnxRuntimeSession>(request);
}

}  // namespace at2seld::detail
