#include "at2seld/bench.hpp"

#include <gnu/libc-version.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "manifest.hpp"
#include "util.hpp"

namespace at2seld {
namespace {

using ordered_json = nlohmann::ordered_json;

// VmRSS and VmHWM of this process in MB (Linux), as deploy/bench.py's _rss_mb.
std::pair<std::optional<double>, std::optional<double>> rss_mb() {
  std::ifstream in("/proc/self/status");
  std::optional<double> rss, peak;
  std::string line;
  while (std::getline(in, line)) {
    auto kb = [&] { return std::stod(line.substr(line.find(':') + 1)) / 1024.0; };
    if (line.rfind("VmRSS:", 0) == 0) rss = kb();
    if (line.rfind("VmHWM:", 0) == 0) peak = kb();
  }
  return {rss, peak};
}

// platform.machine(), platform.processor() and platform.platform() as Python gives them on Linux.
ordered_json machine() {
  utsname u{};
  uname(&u);
  return {{"machine", u.machine},
          {"processor", ""},
          {"system", std::string(u.sysname) + "-" + u.release + "-" + u.machine + "-with-glibc" + gnu_get_libc_version()}};
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", std::gmtime(&t));
  return buf;
}

ordered_json json_of(const LatencyStats& s) {
  return {{"median_ms", s.median_ms}, {"p95_ms", s.p95_ms}, {"runs", s.runs}, {"p99_ms", s.p99_ms}, {"mean_ms", s.mean_ms}};
}

ordered_json optional_json(const std::optional<double>& x) { return x ? ordered_json(*x) : ordered_json(nullptr); }

}  // namespace

LatencyStats LatencyStats::of(const std::vector<double>& samples_ms) {
  double sum = 0;
  for (double x : samples_ms) sum += x;
  return LatencyStats{detail::percentile(samples_ms, 50), detail::percentile(samples_ms, 95),
                      detail::percentile(samples_ms, 99), sum / static_cast<double>(samples_ms.size()),
                      static_cast<int>(samples_ms.size())};
}

// `warmup` untimed calls of `f`, then the times of `iterations` more (as timing.time_runs).
template <typename F>
LatencyStats time_runs(F&& f, int warmup, int iterations) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> times;
  for (int i = 0; i < iterations; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return LatencyStats::of(times);
}

BenchReport bench(Runtime& runtime, int iterations, int warmup) {
  const Manifest& m = runtime.manifest();
  const int64_t samples = m.window.samples;
  const double window_s = static_cast<double>(samples) / static_cast<double>(m.sample_rate);
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> audio(static_cast<size_t>(4 * samples));
  for (float& x : audio) x = normal(rng);
  BenchReport r;
  r.window = time_runs([&] { runtime.infer(audio.data(), samples); }, warmup, iterations);
  if (m.stream) {
    const int64_t hop = m.label_hop_samples;
    std::vector<float> piece(static_cast<size_t>(4 * hop));
    for (int64_t c = 0; c < 4; ++c) std::copy_n(audio.begin() + c * samples, hop, piece.begin() + c * hop);
    Streamer streamer = runtime.stream();
    r.stream_hop = time_runs([&] { streamer.push(piece.data(), hop); }, warmup, iterations);
    r.stream_state_bytes = m.stream->state_bytes();
    r.sound_to_detection_ms = 1000.0 * static_cast<double>(m.stream->lookahead_samples) /
                                  static_cast<double>(m.sample_rate) + r.stream_hop->median_ms;
  }
  r.bundle = runtime.root().string();
  r.backend = runtime.backend_name();
  r.precision = m.precision;
  r.window_s = window_s;
  r.hop_s = m.label_hop_s;
  r.throughput_windows_per_s = 1000.0 / r.window.median_ms;
  r.audio_seconds_per_s = window_s * 1000.0 / r.window.median_ms;
  r.rtf_window = r.window.median_ms / 1000.0 / window_s;
  r.rtf_hop = r.window.median_ms / 1000.0 / m.label_hop_s;
  std::tie(r.host_rss_mb, r.host_peak_rss_mb) = rss_mb();
  return r;
}

std::string BenchReport::json() const {
  ordered_json j = {{"toolkit_version", detail::kToolkitVersion}, {"torch_version", nullptr},
                    {"python_version", nullptr}, {"created_utc", utc_now()}, {"artifact", "bench_report"},
                    {"bundle", bundle}, {"backend", backend}, {"precision", precision}, {"window_s", window_s},
                    {"hop_s", hop_s}, {"window", json_of(window)}, {"stream_hop", stream_hop ? json_of(*stream_hop) : ordered_json(nullptr)},
                    {"throughput_windows_per_s", throughput_windows_per_s}, {"audio_seconds_per_s", audio_seconds_per_s},
                    {"rtf_window", rtf_window}, {"rtf_hop", rtf_hop}, {"host_rss_mb", optional_json(host_rss_mb)},
                    {"host_peak_rss_mb", optional_json(host_peak_rss_mb)}, {"device_memory_mb", nullptr},
                    {"power", nullptr}, {"machine", machine()},
                    {"stream_state_bytes", stream_state_bytes ? ordered_json(*stream_state_bytes) : ordered_json(nullptr)},
                    {"sound_to_detection_ms", optional_json(sound_to_detection_ms)},
                    // no per-layer times here: `edge devices calibrate` derives the layers from the bundle
                    // and fits on the window's end-to-end time
                    {"fit", nullptr},
                    {"notes", ordered_json::array({"fit: end-to-end window time only (at2seld-bench); "
                                                   "`edge devices calibrate --bench` derives the layers from the bundle"})}};
  return j.dump(2) + "\n";
}

std::string BenchReport::markdown() const {
  ordered_json mach = machine();
  std::string where = mach["processor"].get<std::string>().empty() ? mach["system"].get<std::string>()
                                                                   : mach["processor"].get<std::string>();
  auto f = [](const char* fmt, double x) { return detail::format(fmt, x); };
  auto mb = [&](const std::optional<double>& x) { return x ? f("%.0f", *x) : std::string("n/a"); };
  std::vector<std::vector<std::string>> latency = {
      {detail::format("window (%g s) = per hop, sliding window", window_s), f("%.2f", window.median_ms),
       f("%.2f", window.p95_ms), f("%.2f", window.p99_ms), f("%.2f", window.mean_ms), std::to_string(window.runs)}};
  if (stream_hop) {
    const LatencyStats& h = *stream_hop;
    latency.push_back({detail::format("streaming, one %g ms hop", hop_s * 1000), f("%.2f", h.median_ms),
                       f("%.2f", h.p95_ms), f("%.2f", h.p99_ms), f("%.2f", h.mean_ms), std::to_string(h.runs)});
  }
  std::vector<std::vector<std::string>> summary = {
      {"throughput", f("%.1f windows/s, ", throughput_windows_per_s) + f("%.1f s of audio per s", audio_seconds_per_s)},
      {"real-time factor (window)", f("%.4f", rtf_window)},
      {"real-time factor (per hop, sliding window)", f("%.3f", rtf_hop)},
      {"host memory (RSS now / peak)", mb(host_rss_mb) + " / " + mb(host_peak_rss_mb) + " MB"},
      {"device memory in use", "n/a (CPU backend or no cuda-python)"},
      {"power", "n/a (no tegrastats or jtop)"}};
  if (stream_hop) {
    summary.push_back({"streaming: sound to detection (lookahead + hop compute)", f("%.2f ms", *sound_to_detection_ms)});
    summary.push_back({"streaming: state carried between hops", detail::thousands(*stream_state_bytes) + " bytes"});
  }
  return "# Benchmark: " + bundle + "\n\nBackend " + backend + ", " + precision + " bundle, batch 1, machine " +
         mach["machine"].get<std::string>() + " (" + where + ").\n\n" +
         detail::markdown_table({"latency", "median ms", "p95 ms", "p99 ms", "mean ms", "runs"}, latency) + "\n\n" +
         detail::markdown_table({"measure", "value"}, summary) + "\n";
}

std::vector<std::filesystem::path> write_bench(const BenchReport& report, const std::filesystem::path& out_dir) {
  std::string stem = "bench-" + report.backend.substr(0, report.backend.find(' '));
  std::vector<std::filesystem::path> paths = {out_dir / (stem + ".json"), out_dir / (stem + ".md")};
  detail::atomic_write_text(paths[0], report.json());
  detail::atomic_write_text(paths[1], report.markdown());
  return paths;
}

}  // namespace at2seld
