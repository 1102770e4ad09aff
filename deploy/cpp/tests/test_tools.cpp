// The command-line tools against `edge` itself: the same CSV from the same wav and bundle, the
// same refusals with the same messages and exit codes, the same bench JSON schema.
#include <sndfile.h>

#include "helpers.hpp"

using namespace testing_helpers;

namespace {

const std::string kEdge = AT2SELD_EDGE, kRun = AT2SELD_RUN_TOOL, kVerify = AT2SELD_VERIFY_TOOL,
                  kBench = AT2SELD_BENCH_TOOL;

// `frames` frames (default: 100 ms) of a quiet constant, 16-bit PCM.
void write_wav(const fs::path& path, int channels, int rate, int frames = -1) {
  if (frames < 0) frames = rate / 10;
  SF_INFO info{};
  info.channels = channels;
  info.samplerate = rate;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  std::vector<float> samples(static_cast<size_t>(channels) * frames + 1, 0.01f);
  sf_writef_float(f, samples.data(), frames);
  sf_close(f);
}

// The lines of `err` that start with "warning: ".
std::vector<std::string> warnings(const std::string& err) {
  std::vector<std::string> out;
  std::stringstream lines(err);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("warning: ", 0) == 0) out.push_back(line);
  }
  return out;
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

// ---- issue 21: audio the label grid does not cover whole, and outputs aimed into a bundle.

struct ShortAudio {
  std::string label, bundle;
  int frames;              // written; -1: 4,800 written, then the file cut 1,001 bytes short
  bool stream;
  std::vector<std::string> expected;  // the warnings after "warning: WAV: "
};

void PrintTo(const ShortAudio& s, std::ostream* os) { *os << s.label; }

class ShortAudioRun : public ::testing::TestWithParam<ShortAudio> {};

TEST_P(ShortAudioRun, WarnsAsEdgeRunDoesInOneLine) {
  const ShortAudio& c = GetParam();
  fs::path dir = scratch(), wav = dir / (c.label + ".wav"), bundle = fixture(c.bundle);
  write_wav(wav, 4, 24000, c.frames < 0 ? 4800 : c.frames);
  if (c.frames < 0) fs::resize_file(wav, fs::file_size(wav) - 1001);
  std::string stream = c.stream ? " --stream" : "";
  Result py = run(kEdge + " run " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "py.csv") +
                  " --no-plot" + stream);
  Result cpp = run(kRun + " " + quoted(wav) + " --bundle " + quoted(bundle) + " --out " + quoted(dir / "cpp.csv") + stream);
  ASSERT_EQ(py.code, 0) << py.err;
  ASSERT_EQ(cpp.code, 0) << cpp.err;
  std::vector<std::string> want;
  for (const std::string& w : c.expected) want.push_back("warning: " + wav.string() + ": " + w);
  EXPECT_EQ(warnings(cpp.err), want) << cpp.err;
  EXPECT_EQ(warnings(py.err), want) << py.err;
  EXPECT_EQ(read_file(dir / "cpp.csv"), read_file(dir / "py.csv"));
}

INSTANTIATE_TEST_SUITE_P(
    Issue21, ShortAudioRun,
    ::testing::Values(
        ShortAudio{"shorter_than_a_hop", "fp32", 1000, false, {"1000 samples, shorter than one 100 ms hop: no frames"}},
        ShortAudio{"empty_streamed", "stream", 0, true, {"0 samples, shorter than one 100 ms hop: no frames"}},
        ShortAudio{"ragged_tail", "fp32", 7700, false,
                   {"its last 500 samples (20.8 ms) are less than one 100 ms hop: dropped"}},
        ShortAudio{"truncated", "stream", -1, true,
                   {"truncated: its header promises 4,800 samples, the file holds 4,674",
                    "its last 2274 samples (94.8 ms) are less than one 100 ms hop: dropped"}}),
    [](const auto& info) { return info.param.label; });

TEST(OutputsInABundle, AreRefusedAsEdgeRefusesThemAndNothingIsWritten) {
  fs::path b = copy_bundle(), wav = fixture_wav();
  const std::string before = read_file(b / "manifest.json");
  struct Pair {
    std::string py, cpp, out;
  };
  const std::vector<Pair> pairs = {
      {kEdge + " bench --bundle " + quoted(b) + " --iterations 2 --out " + quoted(b / "reports"),
       kBench + " --bundle " + quoted(b) + " --iterations 2 --out " + quoted(b / "reports"), "reports"},
      {kEdge + " bench --bundle " + quoted(b) + " --iterations 2 --out " + quoted(b),
       kBench + " --bundle " + quoted(b) + " --iterations 2 --out " + quoted(b), ""},
      {kEdge + " run " + quoted(wav) + " --bundle " + quoted(b) + " --no-plot --out " + quoted(b / "profile" / "x.csv"),
       kRun + " " + quoted(wav) + " --bundle " + quoted(b) + " --out " + quoted(b / "profile" / "x.csv"), "profile/x.csv"}};
  for (const Pair& p : pairs) {
    Result py = run(p.py), cpp = run(p.cpp);
    EXPECT_EQ(cpp.code, 2) << cpp.err;
    EXPECT_EQ(py.code, 2) << py.err;
    EXPECT_EQ(error_line(cpp.err), error_line(py.err));
    fs::path out = p.out.empty() ? b : b / p.out;
    EXPECT_EQ(error_line(cpp.err), out.string() + ": inside the bundle " + fs::canonical(b).string() +
                                       "; a bundle holds only what its manifest lists: write outputs outside it");
  }
  EXPECT_FALSE(fs::exists(b / "reports"));
  EXPECT_FALSE(fs::exists(b / "profile" / "x.csv"));
  EXPECT_EQ(read_file(b / "manifest.json"), before);
  EXPECT_NO_THROW(at2seld::Runtime::open(b));  // still whole
}
