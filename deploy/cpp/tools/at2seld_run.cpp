// at2seld-run FILE.wav --bundle B [--out events.csv]: one FOA recording through a bundle to
// DCASE output rows, as `edge run` (without its plot).
#include <algorithm>
#include <cstdio>
#include <set>

#include "cli.hpp"

namespace {

// The recording fed as a live stream would be, one label hop per push (as run.stream_through).
at2seld::Prediction stream_through(at2seld::Runtime& rt, const at2seld::Audio& audio) {
  at2seld::Streamer streamer = rt.stream();
  const int64_t hop = rt.manifest().label_hop_samples;
  at2seld::Prediction all;
  std::vector<float> piece;
  for (int64_t i = 0; i < audio.samples; i += hop) {
    const int64_t n = std::min(hop, audio.samples - i);
    piece.resize(static_cast<size_t>(4 * n));
    for (int64_t c = 0; c < 4; ++c) {
      std::copy_n(audio.data.begin() + c * audio.samples + i, n, piece.begin() + c * n);
    }
    at2seld::Prediction p = streamer.push(piece.data(), n, i + hop >= audio.samples).frames;
    all.frames += p.frames;
    all.tracks = p.tracks;
    all.classes = p.classes;
    all.probabilities.insert(all.probabilities.end(), p.probabilities.begin(), p.probabilities.end());
    all.doa.insert(all.doa.end(), p.doa.begin(), p.doa.end());
    all.detections.insert(all.detections.end(), p.detections.begin(), p.detections.end());
  }
  return all;
}

// What a recording loses to the label grid, as edge run says it (run.py's frames_warning): all of
// it when shorter than one hop, else the tail after its last whole hop; "" when nothing.
std::string frames_warning(const std::filesystem::path& wav, int64_t samples, int64_t hop, int64_t rate) {
  const double hop_ms = 1000.0 * static_cast<double>(hop) / static_cast<double>(rate);
  char text[256];
  if (samples < hop) {
    std::snprintf(text, sizeof text, "%lld samples, shorter than one %g ms hop: no frames", static_cast<long long>(samples),
                  hop_ms);
  } else if (samples % hop) {
    const int64_t tail = samples % hop;
    std::snprintf(text, sizeof text, "its last %lld samples (%.1f ms) are less than one %g ms hop: dropped",
                  static_cast<long long>(tail), 1000.0 * static_cast<double>(tail) / static_cast<double>(rate), hop_ms);
  } else {
    return "";
  }
  return "warning: " + wav.string() + ": " + text;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace at2seld;
  cli::Tool tool{
      "at2seld-run FILE.wav --bundle BUNDLE [--out events.csv] [--stream] [--repair] [--backend auto|onnxruntime|tensorrt] "
      "[--device auto|cpu|cuda]",
      {"--bundle", "--out", "--backend", "--device"},
      {"--stream", "--repair"},
      [](const cli::Args& a) {
        if (a.positional.size() != 1) throw cli::ArgError("expected one FILE.wav");
        std::filesystem::path wav = a.positional[0];
        Runtime rt = Runtime::open(a.required("--bundle"), cli::runtime_options(a));
        std::filesystem::path out = a.get("--out", wav.filename().replace_extension(".csv").string());
        cli::check_output_file(out);
        Audio audio = read_foa(wav, rt.manifest().sample_rate, a.has("--repair"));
        for (const std::string& w : audio.warnings) std::cerr << w << "\n";
        const Manifest& m = rt.manifest();
        std::string lost = frames_warning(wav, audio.samples, m.label_hop_samples, m.sample_rate);
        if (!lost.empty()) std::cerr << lost << "\n";
        Prediction p = a.has("--stream") ? stream_through(rt, audio) : rt.predict(audio.data.data(), audio.samples);
        write_dcase_csv(out, p.detections);
        std::set<int64_t> frames;
        for (const Detection& d : p.detections) frames.insert(d.frame);
        std::cout << wav.string() << ": " << p.frames << " frames, " << p.detections.size() << " detections in "
                  << frames.size() << " frames (" << rt.backend_name() << "); wrote " << out.string() << "\n";
        return 0;
      }};
  return cli::run(argc, argv, tool);
}
