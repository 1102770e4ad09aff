// at2seld_runtime: load, verify and run an at2seld-edge deployment bundle from C++.
//
// A bundle is untrusted input: Runtime::open() checks the manifest (schema, format and toolkit
// version, file names, every file's sha256, no unlisted files, its numbers against each other,
// golden.npz's shapes) and then the model's inputs and outputs against the manifest, and only
// then returns a Runtime. Any problem throws at2seld::Error naming the file and the problem;
// nothing is returned half-loaded.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// The library is built with hidden symbols; this marks its public interface.
#define AT2SELD_API __attribute__((visibility("default")))

namespace at2seld {

// What went wrong, as the Python toolkit's ErrorKind: a bad file (Input), a bad call or command
// line (Usage), a failed numerical or integrity check (Check).
enum class ErrorKind { Input, Usage, Check };

class AT2SELD_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::Input)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }
  // The exit code `edge` uses for the same kind: 2 for a malformed command line, else 1.
  int exit_code() const noexcept { return kind_ == ErrorKind::Usage ? 2 : 1; }

 private:
  ErrorKind kind_;
};

enum class Backend { Auto, OnnxRuntime, TensorRT };
enum class Device { Auto, Cpu, Cuda };  // ONNX Runtime's provider: CUDA where the library has it

struct Options {
  Backend backend = Backend::Auto;  // Auto: TensorRT where the bundle has an engine and it was compiled in
  Device device = Device::Auto;
  int intra_op_threads = 0;  // ONNX Runtime: 0 = its default
};

// One dimension of a tensor in the manifest: a fixed size, or a named dynamic axis.
struct Dim {
  int64_t size = -1;   // -1 when dynamic
  std::string symbol;  // the axis name when dynamic
};

struct TensorSpec {
  std::string name;
  std::vector<Dim> shape;
  std::string dtype;
};

// What one inference takes: a fixed `samples`, or any multiple of the label hop in
// [min_samples, max_samples] when dynamic_time (TensorRT's optimization profile).
struct Window {
  bool dynamic_time = false;
  int64_t samples = 0;
  int64_t min_samples = 0;
  int64_t max_samples = 0;
};

struct EngineInfo {
  std::string file, builder, tensorrt_version, gpu_name, compute_capability;
};

// One tensor of a stream's state: a causal layer's left context, fed to the stream graph as
// `input` and returned for the next hop as `output`, of a fixed shape (float32).
struct StreamState {
  std::string name, input, output, dtype;
  std::vector<int64_t> shape;
  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// The stream graph of a causal model: one hop of audio (1, 4, hop_samples) and every state in,
// the hop's frame and every next state out, all shapes fixed; a stream starts from zeros.
struct StreamSpec {
  std::string graph;
  std::optional<std::string> engine;  // the stream graph's TensorRT engine, beside the bundle's engine
  int64_t hop_samples = 0, lookahead_samples = 0, context_samples = 0, history_frames = 0;
  std::vector<StreamState> states;
  int64_t state_bytes() const {
    int64_t n = 0;
    for (const StreamState& s : states) n += 4 * s.elements();
    return n;
  }
};

// The manifest fields a caller needs; the rest is checked at open() and not kept.
struct Manifest {
  std::string format, toolkit_version, target, precision, model, golden, channel_order;
  std::vector<TensorSpec> inputs, outputs;
  int64_t sample_rate = 0;
  double label_hop_s = 0;
  int64_t label_hop_samples = 0;
  Window window;
  bool causal = false;
  std::optional<StreamSpec> stream;  // causal models: the stream graph and its state
  std::vector<std::string> class_names;
  std::vector<float> thresholds;
  std::map<std::string, std::optional<double>> tolerances;
  std::optional<EngineInfo> engine;
  std::optional<std::string> fp16_model;  // the FP16-typed graph strongly typed builders take (TensorRT-RTX)
};

// A tensor returned by one inference (float32, row-major).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// One DCASE output row: an active track (probability above its class threshold); same-class
// tracks within 15 degrees of each other are merged into one, as the Python decoder does.
struct AT2SELD_API Detection {
  int64_t frame = 0;
  int cls = 0;
  int track = 0;
  std::array<float, 3> xyz{};  // unit DOA vector
  double azimuth_deg() const;
  double elevation_deg() const;
};

// A clip's frames: SED probabilities (frames, tracks, classes), DOA vectors
// (frames, tracks, classes, 3) and the decoded rows, ordered as the CSV is.
struct Prediction {
  int64_t frames = 0;
  int tracks = 0;
  int classes = 0;
  std::vector<float> probabilities;
  std::vector<float> doa;
  std::vector<Detection> detections;
};

class Streamer;

// A loaded bundle. Audio is planar float32 FOA at the bundle's rate: channel c (ACN W, Y, Z, X)
// at audio[c * samples + i]. One thread at a time per Runtime.
class AT2SELD_API Runtime {
 public:
  static Runtime open(const std::filesystem::path& bundle_dir, const Options& options = {});
  static Runtime open(const std::filesystem::path& bundle_dir, Backend backend) {
    Options o;
    o.backend = backend;
    return open(bundle_dir, o);
  }
  Runtime(Runtime&&) noexcept;
  Runtime& operator=(Runtime&&) noexcept;
  ~Runtime();

  const Manifest& manifest() const;
  const std::filesystem::path& root() const;
  // The backend as `edge` names it, e.g. "onnxruntime (CPUExecutionProvider)".
  const std::string& backend_name() const;

  // One inference of batch 1 on `samples` samples the bundle accepts: outputs by name.
  std::map<std::string, Tensor> infer(const float* audio, int64_t samples);
  // A whole clip in the bundle's windows, decoded with its thresholds (as SeldRuntime.predict
  // and edge run): the clip's whole label frames.
  Prediction predict(const float* audio, int64_t samples);
  // A streamer over the bundle's stream graph (on this runtime's backend; TensorRT needs the
  // bundle's stream engine); throws Error (Usage) for a bundle without one (a model not causal).
  Streamer stream();

 private:
  struct Impl;
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Frames completed by one push: probabilities/doa hold `frames` frames from `first_frame` on;
// the detections carry their frame numbers from the start of the stream.
struct StreamFrames {
  int64_t first_frame = 0;
  Prediction frames;
};

// Feeds audio (planar, `samples` per channel) in pieces of any length; each push returns the
// label frames it completes, each as soon as its hop of audio is in, equal to a whole-clip
// inference of the same causal model (as the Python Streamer). Each hop runs the bundle's stream
// graph once with the state the manifest names (fixed shapes), so memory stays flat. `final`
// ends the stream: a partial last hop is dropped (not a whole label frame) and the next push
// starts a new stream from zeros. Made by Runtime::stream().
class AT2SELD_API Streamer {
 public:
  StreamFrames push(const float* audio, int64_t samples, bool final = false);
  void reset();  // a new stream: zero state, nothing pending, frames counted from 0
  Streamer(Streamer&&) noexcept;
  Streamer& operator=(Streamer&&) noexcept;
  ~Streamer();

 private:
  friend class Runtime;
  struct Impl;
  explicit Streamer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A FOA wav as planar float32 (read with libsndfile); refuses what `edge run` refuses, with its
// messages: a missing or unreadable file, not 4 channels, another sample rate, NaN or Inf
// samples (zeroed instead with `repair`, which says so in `warnings`). A truncated file (fewer
// samples than its header promises) is read as far as it goes, with a warning.
struct Audio {
  int64_t samples = 0;
  std::vector<float> data;  // 4 * samples, planar
  std::vector<std::string> warnings;  // one line each, as edge run prints them
};
AT2SELD_API Audio read_foa(const std::filesystem::path& path, int64_t sample_rate, bool repair = false);

// DCASE output CSV (frame,class,track,azimuth,elevation with 2 decimals), written atomically.
AT2SELD_API void write_dcase_csv(const std::filesystem::path& path, const std::vector<Detection>& detections);

}  // namespace at2seld
