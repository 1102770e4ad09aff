#include "audio.hpp"

#include <sndfile.h>

#include <cmath>
#include <regex>

#include "at2seld/runtime.hpp"
#include "util.hpp"

namespace at2seld {
namespace detail {

std::string describe_non_finite(const float* audio, int64_t samples) {
  int64_t count = 0, first = samples, channel = 0;
  for (int64_t c = 0; c < 4; ++c) {
    for (int64_t i = 0; i < samples; ++i) {
      if (std::isfinite(audio[c * samples + i])) continue;
      ++count;
      if (i < first) first = i, channel = c;
    }
  }
  if (count == 0) return "";
  return format("%lld non-finite sample(s) (NaN or Inf), the first at sample %lld of channel %lld",
                static_cast<long long>(count), static_cast<long long>(first), static_cast<long long>(channel));
}

namespace {

// The frames a file's header promised where libsndfile found fewer (run.py's promised_frames):
// its header log says `data : 192000 (should be 190999)` (bytes) beside the block align (bytes
// per frame); -1 when it says nothing of the kind.
int64_t promised_frames(SNDFILE* file) {
  char log[4096] = {};
  sf_command(file, SFC_GET_LOG_INFO, log, sizeof log);
  static const std::regex data(R"((^|\n)data\s*:\s*([0-9]{1,18})\s*\(should be [0-9]+\))"),
      align(R"((^|\n)\s*Block Align\s*:\s*([0-9]{1,9}))");
  std::cmatch d, b;
  if (!std::regex_search(log, d, data) || !std::regex_search(log, b, align) || std::stoll(b[2].str()) == 0) return -1;
  return std::stoll(d[2].str()) / std::stoll(b[2].str());
}

}  // namespace

}  // namespace detail

Audio read_foa(const std::filesystem::path& path, int64_t sample_rate, bool repair) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(path.string() + ": audio file not found");
  SF_INFO info{};
  SNDFILE* file = sf_open(path.c_str(), SFM_READ, &info);
  if (!file) {
    throw Error(path.string() + ": not a readable audio file (Error opening " + detail::py_repr(path.string()) + ": " +
                sf_strerror(nullptr) + ")");
  }
  std::unique_ptr<SNDFILE, decltype(&sf_close)> owned(file, sf_close);
  if (info.channels != 4) {
    throw Error(path.string() + ": " + std::to_string(info.channels) +
                " channels; the model takes 4-channel FOA (ACN: W, Y, Z, X)");
  }
  if (info.samplerate < 8000 || info.samplerate > 192000) {
    throw Error(path.string() + ": sample rate " + std::to_string(info.samplerate) + " Hz is outside 8000-192000 Hz");
  }
  if (info.samplerate != sample_rate) {
    throw Error(path.string() + ": sample rate " + std::to_string(info.samplerate) + " Hz; the bundle expects " +
                std::to_string(sample_rate) + " Hz (convert it first, e.g. edge run --resample; at2seld-run does "
                "not resample)");
  }
  std::vector<float> interleaved(static_cast<size_t>(info.frames) * 4);
  sf_count_t got = sf_readf_float(file, interleaved.data(), info.frames);
  if (got < 0 || sf_error(file) != SF_ERR_NO_ERROR) {
    throw Error(path.string() + ": not a readable audio file (" + sf_strerror(file) + ")");
  }
  Audio a;
  int64_t promised = detail::promised_frames(file);
  if (promised > got) {
    a.warnings.push_back("warning: " + path.string() + ": truncated: its header promises " +
                         detail::thousands(static_cast<uintmax_t>(promised)) + " samples, the file holds " +
                         detail::thousands(static_cast<uintmax_t>(got)));
  }
  a.samples = got;
  a.data.resize(static_cast<size_t>(got) * 4);
  for (sf_count_t i = 0; i < got; ++i) {
    for (int c = 0; c < 4; ++c) a.data[static_cast<size_t>(c * got + i)] = interleaved[static_cast<size_t>(i * 4 + c)];
  }
  std::string bad = detail::describe_non_finite(a.data.data(), a.samples);
  if (!bad.empty()) {
    if (!repair) throw Error(path.string() + ": " + bad + "; add --repair to set them to 0");
    a.warnings.push_back("warning: " + path.string() + ": " + bad + ", set to 0 (--repair)");
    for (float& x : a.data) x = std::isfinite(x) ? x : 0.0f;
  }
  return a;
}

}  // namespace at2seld
