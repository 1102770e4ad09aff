// The command-line tools against `edge` itself: the same CSV from the same wav and bundle, the
// same refusals with the same messages and exit codes, the same bench JSON schema.
#include <sndfile.h>

#include "helpers.hpp"

using namespace testing_helpers;

namespace {

const std::string kEdge = AT2SELD_EDGE, kRun = AT2SELD_RUN_TOOL, kVerify = AT2SELD_VERIFY_TOOL,
                  kBench = AT2SELD_BENCH_TOOL;

std::string read_file(const fs::path& p) {
  std::stringstream ss;
  ss << std::ifstream(p, std::ios::binary).rdbuf();
  return ss.str();
}

// "error: MESSAGE\n" -> MESSAGE (both CLIs print one such line).
std::string error_line(const std::string& err) {
  auto at = err.find("error: ");
  if (at == std::string::npos) return "(no error line in: " + err + ")";
  return err.substr(at + 7, err.find('\n', at) - at - 7);
}

void write_wav(const fs::path& path, int channels, int rate) {
  SF_INFO info{};
  info.channels = channels;
  info.samplerate = rate;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  std::vector<float> frames(static_cast<size_t>(channels) * rate / 10, 0.01f);
  sf_writef_float(f, frames.data(), rate / 10);
  sf_close(f);
}

}  // namespace

class RunCsv : public ::testing::TestWithParam<std::string> {};

TEST_P(RunCsv, IdenticalToEdgeRun) {
  fs::path dir = scratch(), wav = fixture_wav(), bundle = fixture(GetParam());
  Result py = run(kEdge + " run " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "py.csv") +
                  " --no-plot");
  ASSERT_EQ(py.code, 0) << py.err;
  Result cpp = run(kRun + " " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "cpp.csv"));
  ASSERT_EQ(cpp.code, 0) << cpp.err;
  std::string expected = read_file(dir / "py.csv");
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(read_file(dir / "cpp.csv"), expected);
  EXPECT_NE(cpp.out.find(" frames, "), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Bundles, RunCsv, ::testing::Values("fp32", "int8"));

TEST(RunCsv, StreamedIdenticalToEdgeRunStream) {
  fs::path dir = scratch(), wav = fixture_wav(), bundle = fixture("stream");
  Result py = run(kEdge + " run " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "py.csv") +
                  " --no-plot --stream");
  ASSERT_EQ(py.code, 0) << py.err;
  Result cpp = run(kRun + " " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "cpp.csv") +
                   " --stream");
  ASSERT_EQ(cpp.code, 0) << cpp.err;
  std::string expected = read_file(dir / "py.csv");
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(read_file(dir / "cpp.csv"), expected);
}

TEST(RunWav, BadWavsAreRefusedWithEdgeRunsMessages) {
  fs::path dir = scratch(), bundle = fixture("fp32");
  write_wav(dir / "stereo.wav", 2, 24000);
  write_wav(dir / "rate.wav", 4, 48000);
  std::ofstream(dir / "text.wav") << "not audio";
  std::vector<std::string> cases = {"stereo.wav", "rate.wav", "text.wav", "missing.wav"};
  for (const std::string& name : cases) {
    fs::path wav = dir / name;
    Result py = run(kEdge + " run " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "x.csv"));
    Result cpp = run(kRun + " " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "x.csv"));
    EXPECT_EQ(cpp.code, py.code) << name;
    EXPECT_EQ(cpp.code, 1) << name;
    std::string want = error_line(py.err), got = error_line(cpp.err);
    if (name == "rate.wav") {  // the same refusal; at2seld-run has no --resample to suggest
      want = want.substr(0, want.find(" ("));
      got = got.substr(0, got.find(" ("));
    }
    EXPECT_EQ(got, want) << name;
  }
  EXPECT_FALSE(fs::exists(dir / "x.csv"));
}

TEST(RunWav, StreamingANonCausalBundleIsRefusedAsEdgeDoes) {
  fs::path wav = fixture_wav(), bundle = fixture("fp32"), dir = scratch();
  Result py = run(kEdge + " run " + quoted(wav) + " --bundle " + quoted(bundle) + " --stream --no-plot --out " +
                  quoted(dir / "x.csv"));
  Result cpp = run(kRun + " " + quoted(wav) + " --bundle " + quoted(bundle) + " --stream --out " + quoted(dir / "x.csv"));
  EXPECT_EQ(cpp.code, py.code);
  EXPECT_EQ(error_line(cpp.err), error_line(py.err));
}

TEST(RunWav, UsageErrorsExitTwo) {
  Result none = run(kRun);
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("usage: at2seld-run FILE.wav --bundle"), std::string::npos) << none.err;
  Result no_bundle = run(kRun + " " + quoted(fixture_wav()));
  EXPECT_EQ(no_bundle.code, 2);
  EXPECT_EQ(error_line(no_bundle.err), "missing option --bundle");
  Result bad = run(kBench + " --bundle " + quoted(fixture("fp32")) + " --iterations 1");
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(error_line(bad.err), "--iterations must be at least 2 and --warmup at least 0");
}

TEST(VerifyTool, PassesAndRefusesATamperedBundle) {
  Result ok = run(kVerify + " --bundle " + quoted(fixture("int8")));
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\nPASS\n"), std::string::npos) << ok.out;
  fs::path b = copy_bundle();
  std::ofstream(b / "lint.md", std::ios::app) << "changed";
  Result bad = run(kVerify + " --bundle " + quoted(b));
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(error_line(bad.err), b.string() + ": bundle integrity check failed: lint.md: sha256 differs from the "
                                              "manifest (changed after the build)");
}

// Every key path of a JSON document, with the JSON type of each non-null value.
void key_paths(const json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string path = prefix + "/" + it.key();
    out[path] = it->is_null() ? "null-or-any" : it->is_number() ? "number" : it->type_name();
    if (it->is_object()) key_paths(*it, path, out);
  }
}

TEST(BenchTool, JsonHasEdgeBenchsSchema) {
  fs::path dir = scratch(), bundle = fixture("fp32");
  Result py = run(kEdge + " bench --bundle " + quoted(bundle) + " --iterations 2 --warmup 0 --out " + quoted(dir / "py"));
  ASSERT_EQ(py.code, 0) << py.err;
  Result cpp = run(kBench + " --bundle " + quoted(bundle) + " --iterations 5 --warmup 1 --out " + quoted(dir / "cpp"));
  ASSERT_EQ(cpp.code, 0) << cpp.err;
  json want = json::parse(read_file(dir / "py" / "bench-onnxruntime.json"));
  json got = json::parse(read_file(dir / "cpp" / "bench-onnxruntime.json"));
  std::map<std::string, std::string> want_keys, got_keys;
  want.erase("fit");  // Python records per-module times; C++ end-to-end only (null), which calibrate takes too
  ASSERT_TRUE(got.contains("fit") && got["fit"].is_null());
  got.erase("fit");
  key_paths(want, "", want_keys);
  key_paths(got, "", got_keys);
  for (auto& [path, type] : want_keys) {
    ASSERT_TRUE(got_keys.count(path)) << path;
    if (type != "null-or-any" && got_keys[path] != "null-or-any") EXPECT_EQ(got_keys[path], type) << path;
  }
  EXPECT_EQ(got_keys.size(), want_keys.size());
  EXPECT_EQ(got["window"]["runs"], 5);
  EXPECT_GT(got["window"]["median_ms"].get<double>(), 0.0);
  EXPECT_GT(got["host_rss_mb"].get<double>(), 0.0);
  EXPECT_EQ(got["machine"], want["machine"]);
  EXPECT_TRUE(fs::exists(dir / "cpp" / "bench-onnxruntime.md"));
  Result fit = run(kEdge + " devices calibrate --dry-run --bench " + quoted(dir / "cpp" / "bench-onnxruntime.json"));
  EXPECT_EQ(fit.code, 0) << fit.err;  // edge devices calibrate accepts at2seld-bench's JSON
}
