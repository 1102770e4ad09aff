// One measurement for benchmarks/cpp_runtime.py, in a process of its own so that its RSS is its
// own: cold start (open + first inference) and per-window latency of
//   probe runtime BUNDLE ITERATIONS         the at2seld_runtime (bundle checks included in open)
//   probe onnxruntime BUNDLE ITERATIONS     a bare ONNX Runtime session on the bundle's model
// both on the same window of audio; prints one JSON object.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "at2seld/bench.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double status_mb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  }
  return -1;
}

struct Probe {
  std::function<void()> open;
  std::function<void()> infer;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: at2seld-bench-probe runtime|onnxruntime BUNDLE ITERATIONS\n";
    return 2;
  }
  std::string mode = argv[1], bundle = argv[2];
  int iterations = std::stoi(argv[3]);
  // The window edge bench times: the manifest's `window.samples`, batch 1.
  std::ifstream mf(bundle + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(mf);
  int64_t samples = manifest["window"]["samples"];
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> audio(static_cast<size_t>(4 * samples));
  for (float& x : audio) x = normal(rng);

  std::optional<at2seld::Runtime> rt;
  std::optional<Ort::Env> env;
  std::optional<Ort::Session> session;
  Ort::MemoryInfo* memory = nullptr;
  Probe probe;
  if (mode == "runtime") {
    probe.open = [&] { rt.emplace(at2seld::Runtime::open(bundle)); };
    probe.infer = [&] { rt->infer(audio.data(), samples); };
  } else {
    probe.open = [&] {
      Ort::InitApi(OrtGetApiBase()->GetApi(ORT_API_VERSION));
      env.emplace(ORT_LOGGING_LEVEL_ERROR, "probe");
      Ort::SessionOptions so;
      so.SetLogSeverityLevel(3);
      std::string model = bundle + "/" + manifest["model"].get<std::string>();
      session.emplace(*env, model.c_str(), so);
      static Ort::MemoryInfo info = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      memory = &info;
    };
    probe.infer = [&] {
      const char* in_names[] = {"audio"};
      const char* out_names[] = {"sed_logits", "doa"};
      int64_t shape[] = {1, 4, samples};
      Ort::Value x = Ort::Value::CreateTensor<float>(*memory, audio.data(), audio.size(), shape, 3);
      session->Run(Ort::RunOptions{nullptr}, in_names, &x, 1, out_names, 2);
    };
  }
  auto t0 = Clock::now();
  probe.open();
  double open_ms = ms_since(t0);
  auto t1 = Clock::now();
  probe.infer();
  double first_ms = ms_since(t1);
  for (int i = 0; i < 10; ++i) probe.infer();
  std::vector<double> times;
  for (int i = 0; i < iterations; ++i) {
    auto t = Clock::now();
    probe.infer();
    times.push_back(ms_since(t));
  }
  auto stats = at2seld::LatencyStats::of(times);
  nlohmann::json out = {{"mode", mode},       {"open_ms", open_ms},     {"first_inference_ms", first_ms},
                        {"cold_start_ms", open_ms + first_ms},          {"median_ms", stats.median_ms},
                        {"p95_ms", stats.p95_ms}, {"runs", stats.runs}, {"rss_mb", status_mb("VmRSS")},
                        {"peak_rss_mb", status_mb("VmHWM")}};
  std::cout << out.dump() << "\n";
  return 0;
}
