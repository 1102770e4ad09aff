// at2seld-verify --bundle B: the bundle's golden inputs on a local backend against its golden
// outputs, under the manifest's tolerances, as `edge verify`.
#include "at2seld/verify.hpp"
#include "cli.hpp"

int main(int argc, char** argv) {
  using namespace at2seld;
  cli::Tool tool{"at2seld-verify --bundle BUNDLE [--backend auto|onnxruntime|tensorrt] [--device auto|cpu|cuda]",
                 {"--bundle", "--backend", "--device"},
                 {},
                 [](const cli::Args& a) {
                   std::string bundle = a.required("--bundle");
                   Runtime rt = Runtime::open(bundle, cli::runtime_options(a));
                   VerifyReport report = verify(rt);
                   std::cout << report.markdown();
                   if (!report.passed()) {
                     std::string why;
                     for (const std::string& f : report.failures()) why += (why.empty() ? "" : "; ") + f;
                     throw Error(bundle + ": " + report.backend + " does not reproduce the golden outputs: " + why,
                                 ErrorKind::Check);
                   }
                   std::cout << "PASS\n";
                   return 0;
                 }};
  return cli::run(argc, argv, tool);
}
