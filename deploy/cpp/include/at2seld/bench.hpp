// `at2seld-bench`: latency of one window (= per hop with a sliding window), of one streamed hop
// for causal bundles, throughput, real-time factor and host memory, reported in the same JSON
// schema as `edge bench`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld {

struct AT2SELD_API LatencyStats {
  double median_ms = 0, p95_ms = 0, p99_ms = 0, mean_ms = 0;
  int runs = 0;
  static LatencyStats of(const std::vector<double>& samples_ms);  // numpy's linear percentiles
};

struct AT2SELD_API BenchReport {
  std::string bundle, backend, precision;
  double window_s = 0, hop_s = 0;
  LatencyStats window;
  double throughput_windows_per_s = 0, audio_seconds_per_s = 0, rtf_window = 0, rtf_hop = 0;
  std::optional<double> host_rss_mb, host_peak_rss_mb;
  // Causal bundles: one streamed hop (the stream graph), the state it carries, and sound to
  // detection (lookahead + one hop's compute, median).
  std::optional<LatencyStats> stream_hop;
  std::optional<int64_t> stream_state_bytes;
  std::optional<double> sound_to_detection_ms;

  std::string json() const;      // edge bench's BenchReport.to_dict() keys
  std::string markdown() const;  // edge bench's Markdown
};

AT2SELD_API BenchReport bench(Runtime& runtime, int iterations = 100, int warmup = 10);
// bench-BACKEND.json and .md in out_dir (atomically), as `edge bench --out`.
AT2SELD_API std::vector<std::filesystem::path> write_bench(const BenchReport& report, const std::filesystem::path& out_dir);

}  // namespace at2seld
