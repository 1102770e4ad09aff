#include <cmath>

#include "at2seld/runtime.hpp"
#include "audio.hpp"
#include "decode.hpp"
#include "manifest.hpp"
#include "session.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace at2seld {
namespace detail {
namespace {

// The backends this library was compiled with, by name (the registry `auto` chooses from).
const std::map<Backend, SessionFactory>& backend_registry() {
  static const std::map<Backend, SessionFactory> registry = {
      {Backend::OnnxRuntime, make_onnxruntime_session},
#ifdef AT2SELD_WITH_TENSORRT
      {Backend::TensorRT, make_tensorrt_session},
#endif
  };
  return registry;
}

// `auto`: TensorRT where the bundle has an engine and TensorRT was compiled in, else ONNX Runtime.
Backend choose_backend(const Manifest& m, Backend wanted) {
  const auto& registry = backend_registry();
  if (wanted == Backend::Auto) {
    return m.engine && registry.count(Backend::TensorRT) ? Backend::TensorRT : Backend::OnnxRuntime;
  }
  if (!registry.count(wanted)) {
    throw Error("backend tensorrt: this at2seld_runtime was built without TensorRT (CMake did not find it); use the "
                "onnxruntime backend", ErrorKind::Usage);
  }
  return wanted;
}

}  // namespace
}  // namespace detail

struct Runtime::Impl {
  fs::path root;
  Manifest manifest;
  Backend backend;
  std::unique_ptr<detail::GraphSession> session;
  int tracks = 0, classes = 0;
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;
Runtime::~Runtime() = default;

Runtime Runtime::open(const fs::path& bundle_dir, const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->root = bundle_dir;
  impl->manifest = detail::load_manifest(bundle_dir);
  const Manifest& m = impl->manifest;
  impl->backend = detail::choose_backend(m, options.backend);
  detail::SessionRequest request{impl->root, m, m.model, options};
  impl->session = detail::backend_registry().at(impl->backend)(request);
  for (const TensorSpec& t : m.outputs) {
    if (t.name == "sed_logits") {
      impl->tracks = static_cast<int>(t.shape[2].size);
      impl->classes = static_cast<int>(t.shape[3].size);
    }
  }
  return Runtime(std::move(impl));
}

const Manifest& Runtime::manifest() const { return impl_->manifest; }
const fs::path& Runtime::root() const { return impl_->root; }
const std::string& Runtime::backend_name() const { return impl_->session->name(); }

std::map<std::string, Tensor> Runtime::infer(const float* audio, int64_t samples) {
  const Manifest& m = impl_->manifest;
  const Window& w = m.window;
  int64_t hop = m.label_hop_samples;
  if ((!w.dynamic_time && samples != w.samples) || samples < w.min_samples || samples > w.max_samples || samples % hop) {
    std::string allowed = w.dynamic_time ? detail::format("a multiple of %lld in [%lld, %lld]", static_cast<long long>(hop),
                                                          static_cast<long long>(w.min_samples),
                                                          static_cast<long long>(w.max_samples))
                                         : std::to_string(w.samples);
    throw Error(impl_->root.string() + ": input of " + std::to_string(samples) + " samples; the bundle takes " + allowed,
                ErrorKind::Usage);
  }
  return impl_->session->run({{m.inputs[0].name, {1, 4, samples}, audio}});
}

Prediction Runtime::predict(const float* audio, int64_t samples) {
  std::string bad = detail::describe_non_finite(audio, samples);
  if (!bad.empty()) throw Error("audio: " + bad + "; `edge run --repair` zeros them");
  const Manifest& m = impl_->manifest;
  const Window& w = m.window;
  const int64_t hop = m.label_hop_samples, N = impl_->tracks, C = impl_->classes;
  Prediction p;
  p.frames = samples / hop;
  p.tracks = impl_->tracks;
  p.classes = impl_->classes;
  p.probabilities.assign(static_cast<size_t>(p.frames * N * C), 0.0f);
  p.doa.assign(static_cast<size_t>(p.frames * N * C * 3), 0.0f);
  const int64_t step = (w.dynamic_time ? w.max_samples : w.samples) / hop;
  std::vector<float> chunk;
  for (int64_t f0 = 0; f0 < p.frames; f0 += step) {
    const int64_t f1 = std::min(f0 + step, p.frames);
    const int64_t n = (f1 - f0) * hop;
    const int64_t length = std::max(n, w.dynamic_time ? w.min_samples : w.samples);  // zero-padded to what the bundle takes
    chunk.assign(static_cast<size_t>(4 * length), 0.0f);
    for (int64_t c = 0; c < 4; ++c) {
      std::copy(audio + c * samples + f0 * hop, audio + c * samples + f0 * hop + n, chunk.begin() + c * length);
    }
    auto out = infer(chunk.data(), length);
    const std::vector<float>& logits = out.at("sed_logits").data;
    const std::vector<float>& doa = out.at("doa").data;
    for (int64_t i = 0; i < (f1 - f0) * N * C; ++i) {
      p.probabilities[static_cast<size_t>(f0 * N * C + i)] = static_cast<float>(detail::sigmoid(logits[static_cast<size_t>(i)]));
    }
    std::copy(doa.begin(), doa.begin() + (f1 - f0) * N * C * 3, p.doa.begin() + f0 * N * C * 3);
  }
  p.detections = detail::decode(p, m.thresholds);
  return p;
}

Streamer Runtime::stream() {
  if (!impl_->manifest.has_stream_graphs) {
    throw Error(impl_->root.string() + ": this model is not causal (bidirectional smoother), so it does not stream; "
                "build a causal config (smoother.causal: true)", ErrorKind::Usage);
  }
  throw Error(impl_->root.string() + ": this bundle's stream graphs re-run the track transformer over the whole "
              "history each hop; the C++ runtime streams only stream graphs whose state has a fixed shape "
              "(a bounded key/value cache), which no bundle has yet: use edge run --stream", ErrorKind::Usage);
}

struct Streamer::Impl {};
Streamer::Streamer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Streamer::Streamer(Streamer&&) noexcept = default;
Streamer& Streamer::operator=(Streamer&&) noexcept = default;
Streamer::~Streamer() = default;

StreamFrames Streamer::push(const float*, int64_t, bool) {
  throw Error("this streamer has no stream graphs to run", ErrorKind::Usage);
}

}  // namespace at2seld
