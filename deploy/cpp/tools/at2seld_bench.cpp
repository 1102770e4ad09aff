// at2seld-bench --bundle B [--iterations N]: latency, throughput, real-time factor and host
// memory of a bundle, written as bench-BACKEND.json (edge bench's schema) and .md.

#include "at2seld/bench.hpp"
#include "cli.hpp"

int main(int argc, char** argv) {
  using namespace at2seld;
  cli::Tool tool{
      "at2seld-bench --bundle BUNDLE [--iterations 100] [--warmup 10] [--out DIR (default reports/bench-BUNDLE)] "
      "[--backend auto|onnxruntime|tensorrt] [--device auto|cpu|cuda]",
      {"--bundle", "--iterations", "--warmup", "--out", "--backend", "--device"},
      {},
      [](const cli::Args& a) {
        std::filesystem::path bundle = a.required("--bundle");
        int iterations = a.integer("--iterations", 100), warmup = a.integer("--warmup", 10);
        if (iterations < 2 || warmup < 0) {
          throw cli::ArgError("--iterations must be at least 2 and --warmup at least 0");
        }
        Options options = cli::runtime_options(a);
        // Beside, not inside, the bundle: a bundle holds only what its manifest lists.
        std::string name = std::filesystem::weakly_canonical(bundle).filename().string();
        std::filesystem::path out = a.get("--out", "reports/bench-" + name);
        cli::check_output_dir(out, [](const std::filesystem::path& p) {
          for (const auto& e : std::filesystem::directory_iterator(p)) {
            std::string name = e.path().filename().string();
            if (name.rfind("bench-", 0) == 0 && e.path().extension() == ".json") return true;
          }
          return false;
        }, "bench report folder");
        Runtime rt = Runtime::open(bundle, options);
        BenchReport report = bench(rt, iterations, warmup);
        std::cout << report.markdown();
        auto paths = write_bench(report, out);
        std::cout << "wrote " << paths[0].string() << ", " << paths[1].string() << "\n";
        return 0;
      }};
  return cli::run(argc, argv, tool);
}
