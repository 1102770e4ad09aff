#include <algorithm>
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

// Every output the runtime reads must have the shape the manifest gives for this input: the
// reads below are sized by it, so a graph computing another shape (its declared one a lie) is
// refused here, never read past (runtime.py's check_outputs, with its messages).
void check_outputs(const std::map<std::string, Tensor>& out,
                   const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected, const fs::path& graph) {
  for (const auto& [name, shape] : expected) {
    auto it = out.find(name);
    if (it == out.end()) throw Error(graph.string() + ": returned no output " + name, ErrorKind::Check);
    const Tensor& t = it->second;
    double n = 1;  // in double: a forged shape cannot overflow it
    for (int64_t d : shape) n *= static_cast<double>(d);
    if (t.shape != shape || static_cast<double>(t.data.size()) != n) {
      throw Error(graph.string() + ": output " + name + " came back with shape " + shape_text(t.shape) +
                  "; the manifest says " + shape_text(shape), ErrorKind::Check);
    }
  }
}

// sed_logits (1, frames, tracks, classes) and doa (1, frames, tracks, classes, 3).
std::vector<std::pair<std::string, std::vector<int64_t>>> frame_outputs(int64_t frames, int64_t tracks, int64_t classes) {
  return {{"sed_logits", {1, frames, tracks, classes}}, {"doa", {1, frames, tracks, classes, 3}}};
}

}  // namespace
}  // namespace detail

struct Runtime::Impl {
  fs::path root;
  Manifest manifest;
  Options options;
  Backend backend;
  std::unique_ptr<detail::GraphSession> session;
  int tracks = 0, classes = 0;
};

// One stream: the stream graph's session, the state (by graph input name, fixed sizes), the
// partial hop (planar, 4 x hop) and the next frame's number.
struct Streamer::Impl {
  fs::path root;
  std::unique_ptr<detail::GraphSession> session;
  StreamSpec spec;
  std::vector<float> thresholds;
  int tracks = 0, classes = 0;
  std::vector<float> pending;
  int64_t filled = 0, next_frame = 0;
  std::map<std::string, std::vector<float>> state;

  void reset() {
    for (const StreamState& x : spec.states) state[x.input].assign(static_cast<size_t>(x.elements()), 0.0f);
    filled = next_frame = 0;
  }

  // Copies `n` samples per channel of `audio` from `pos` into the partial hop.
  void take(const float* audio, int64_t samples, int64_t& pos, int64_t n) {
    const int64_t hop = spec.hop_samples;
    for (int64_t c = 0; c < 4; ++c) {
      std::copy_n(audio + c * samples + pos, n, pending.begin() + c * hop + filled);
    }
    pos += n;
    filled += n;
  }

  // Runs the stream graph on the full hop: frame k of `p`, and the next state.
  void hop(Prediction& p, int64_t k) {
    const int64_t NC = static_cast<int64_t>(tracks) * classes;
    std::vector<detail::Feed> feeds = {{"audio", {1, 4, spec.hop_samples}, pending.data()}};
    for (const StreamState& x : spec.states) feeds.push_back({x.input, x.shape, state[x.input].data()});
    auto out = session->run(feeds);
    auto expected = detail::frame_outputs(1, tracks, classes);
    for (const StreamState& x : spec.states) expected.emplace_back(x.output, x.shape);
    detail::check_outputs(out, expected, root / spec.graph);
    for (const StreamState& x : spec.states) state[x.input].swap(out.at(x.output).data);
    if (k == 0) {  // allocated once a real output has shown the manifest's tracks and classes are the graph's
      p.probabilities.resize(static_cast<size_t>(p.frames * NC));
      p.doa.resize(static_cast<size_t>(p.frames * NC * 3));
    }
    const std::vector<float>& logits = out.at("sed_logits").data;
    const std::vector<float>& doa = out.at("doa").data;
    for (int64_t i = 0; i < NC; ++i) {
      p.probabilities[static_cast<size_t>(k * NC + i)] = static_cast<float>(detail::sigmoid(logits[static_cast<size_t>(i)]));
    }
    std::copy_n(doa.begin(), NC * 3, p.doa.begin() + k * NC * 3);
    filled = 0;
    ++next_frame;
  }
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;
Runtime::~Runtime() = default;

Runtime Runtime::open(const fs::path& bundle_dir, const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->root = bundle_dir;
  impl->options = options;
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
  auto out = impl_->session->run({{m.inputs[0].name, {1, 4, samples}, audio}});
  detail::check_outputs(out, detail::frame_outputs(samples / hop, impl_->tracks, impl_->classes), impl_->root / m.model);
  return out;
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
    auto out = infer(chunk.data(), length);  // its outputs have the manifest's shapes (checked)
    if (f0 == 0) {  // allocated once a real output has shown the manifest's tracks and classes are the graph's
      p.probabilities.assign(static_cast<size_t>(p.frames * N * C), 0.0f);
      p.doa.assign(static_cast<size_t>(p.frames * N * C * 3), 0.0f);
    }
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
  const Manifest& m = impl_->manifest;
  if (!m.stream) {
    throw Error(impl_->root.string() + ": this model is not causal, so it does not stream; build a streaming bundle: "
                "`edge build --streaming` (the embedded causal default) or a causal checkpoint (smoother.causal: true)",
                ErrorKind::Usage);
  }
  auto impl = std::make_unique<Streamer::Impl>();
  Options options = impl_->options;
  if (options.intra_op_threads == 0) options.intra_op_threads = 1;  // one hop is too little work to split
  detail::SessionRequest request{impl_->root, m, m.stream->graph, options};
  impl->session = detail::backend_registry().at(impl_->backend)(request);
  impl->root = impl_->root;
  impl->spec = *m.stream;
  impl->thresholds = m.thresholds;
  impl->tracks = impl_->tracks;
  impl->classes = impl_->classes;
  impl->pending.assign(static_cast<size_t>(4 * impl->spec.hop_samples), 0.0f);
  impl->reset();
  return Streamer(std::move(impl));
}

Streamer::Streamer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Streamer::Streamer(Streamer&&) noexcept = default;
Streamer& Streamer::operator=(Streamer&&) noexcept = default;
Streamer::~Streamer() = default;

void Streamer::reset() { impl_->reset(); }

StreamFrames Streamer::push(const float* audio, int64_t samples, bool final) {
  if (samples < 0) throw Error("stream: " + std::to_string(samples) + " samples pushed", ErrorKind::Usage);
  std::string bad = detail::describe_non_finite(audio, samples);
  if (!bad.empty()) throw Error("stream: " + bad + "; `edge run --repair` zeros them");
  Impl& s = *impl_;
  const int64_t hop = s.spec.hop_samples;
  StreamFrames out;
  out.first_frame = s.next_frame;
  Prediction& p = out.frames;
  p.frames = (s.filled + samples) / hop;
  p.tracks = s.tracks;
  p.classes = s.classes;
  int64_t pos = 0;
  for (int64_t k = 0; k < p.frames; ++k) {
    s.take(audio, samples, pos, hop - s.filled);
    s.hop(p, k);
  }
  s.take(audio, samples, pos, samples - pos);
  p.detections = detail::decode(p, s.thresholds, out.first_frame);
  if (final) s.reset();
  return out;
}

}  // namespace at2seld
