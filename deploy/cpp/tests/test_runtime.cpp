// Inference and the golden check through the library: the bundles edge build writes at every
// precision pass; the input checks and messages are the Python runtime's.
#include <algorithm>
#include <cmath>

#include "at2seld/verify.hpp"
#include "helpers.hpp"

using namespace testing_helpers;
using at2seld::ErrorKind;
using at2seld::Runtime;

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, BundleReproducesItsGoldenOutputs) {
  Runtime rt = Runtime::open(fixture(GetParam()));
  at2seld::VerifyReport report = at2seld::verify(rt);
  EXPECT_TRUE(report.passed()) << report.markdown();
  EXPECT_EQ(report.rows.size(), 3u);
  EXPECT_EQ(report.precision, GetParam());
  EXPECT_NE(report.markdown().find("| 0 | "), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Bundles, Golden, ::testing::Values("fp32", "fp16", "int8"));

TEST(GoldenCheck, FailsUnderATighterTolerance) {
  fs::path b = copy_bundle();
  edit_manifest(b, [](json& m) { m["tolerances"]["max_abs_doa"] = 1e-9; });
  Runtime rt = Runtime::open(b);
  at2seld::VerifyReport report = at2seld::verify(rt);
  ASSERT_FALSE(report.passed());
  EXPECT_EQ(report.failures().size(), 3u);
  EXPECT_EQ(report.failures()[0].rfind("input 0: abs_doa ", 0), 0u) << report.failures()[0];
  EXPECT_NE(report.failures()[0].find("(must be <= 1e-09)"), std::string::npos) << report.failures()[0];
}

TEST(Infer, LengthsTheBundleDoesNotTakeAreRefused) {
  Runtime rt = Runtime::open(fixture("fp32"));
  std::vector<float> audio(4 * 2401, 0.0f);
  auto e = error_of([&] { rt.infer(audio.data(), 2401); });
  EXPECT_EQ(e.kind(), ErrorKind::Usage);
  EXPECT_EQ(std::string(e.what()), fixture("fp32").string() +
                                       ": input of 2401 samples; the bundle takes a multiple of 2400 in [2400, 1440000]");
  auto out = rt.infer(audio.data(), 2400);
  EXPECT_EQ(out.at("sed_logits").shape, (std::vector<int64_t>{1, 1, 3, 8}));
  EXPECT_EQ(out.at("doa").shape, (std::vector<int64_t>{1, 1, 3, 8, 3}));
}

TEST(Predict, ClipShorterThanAFrameHasNoFrames) {
  Runtime rt = Runtime::open(fixture("fp32"));
  std::vector<float> audio(4 * 1000, 0.01f);
  at2seld::Prediction p = rt.predict(audio.data(), 1000);
  EXPECT_EQ(p.frames, 0);
  EXPECT_TRUE(p.detections.empty());
}

TEST(Predict, StaticBundleRunsAClipInWindowsZeroPaddingTheLast) {
  // The fp32 bundle made static at 1 s: a 3.5 s clip is 3 whole windows and a half one.
  fs::path b = copy_bundle();
  edit_manifest(b, [](json& m) { m["window"] = {{"dynamic_time", false}, {"samples", 24000}, {"min_samples", 24000},
                                                {"max_samples", 24000}}; });
  Runtime rt = Runtime::open(b);
  at2seld::Audio wav = at2seld::read_foa(fixture_wav(), rt.manifest().sample_rate);
  const int64_t n = 84000;
  std::vector<float> clip(4 * n);
  for (int64_t c = 0; c < 4; ++c) std::copy_n(wav.data.begin() + c * wav.samples, n, clip.begin() + c * n);
  at2seld::Prediction p = rt.predict(clip.data(), n);
  ASSERT_EQ(p.frames, 35);
  ASSERT_EQ(p.probabilities.size(), 35u * 3 * 8);
  for (int64_t w = 0; w < 4; ++w) {
    std::vector<float> window(4 * 24000, 0.0f);
    const int64_t len = std::min<int64_t>(24000, n - w * 24000);
    for (int64_t c = 0; c < 4; ++c) std::copy_n(clip.begin() + c * n + w * 24000, len, window.begin() + c * 24000);
    auto out = rt.infer(window.data(), 24000);
    for (int64_t i = 0; i < len / 2400 * 24; ++i) {
      float expected = static_cast<float>(1.0 / (1.0 + std::exp(-double{out.at("sed_logits").data[i]})));
      ASSERT_EQ(p.probabilities[w * 240 + i], expected) << "window " << w << " value " << i;
      ASSERT_EQ(p.doa[3 * (w * 240 + i)], out.at("doa").data[3 * i]);
    }
  }
}

TEST(Predict, NonFiniteAudioIsRefused) {
  Runtime rt = Runtime::open(fixture("fp32"));
  std::vector<float> audio(4 * 4800, 0.0f);
  audio[4800 + 17] = NAN;
  EXPECT_EQ(std::string(error_of([&] { rt.predict(audio.data(), 4800); }).what()),
            "audio: 1 non-finite sample(s) (NaN or Inf), the first at sample 17 of channel 1; `edge run --repair` "
            "zeros them");
}

TEST(Backends, TensorRTWithoutAnEngineIsRefused) {
  auto e = error_of([&] { Runtime::open(fixture("fp32"), at2seld::Backend::TensorRT); });
  EXPECT_EQ(e.kind(), ErrorKind::Usage);
#ifdef AT2SELD_WITH_TENSORRT
  EXPECT_NE(std::string(e.what()).find("no TensorRT engine for model.fp32.onnx in this bundle"), std::string::npos);
#else
  EXPECT_NE(std::string(e.what()).find("built without TensorRT"), std::string::npos) << e.what();
#endif
}

// ---- a graph whose outputs are declared (in the graph and the manifest alike) with 4 tracks while
// it computes 3 (issue 21: at2seld-run read past ONNX Runtime's buffer): the shapes ONNX Runtime
// returns are checked before anything is read by the manifest's sizes.

namespace {

// Declares `tracks` tracks for sed_logits and doa in `graphs`, the manifest and golden.npz.
void declare_tracks(const fs::path& b, const std::vector<std::string>& graphs, int tracks) {
  for (const std::string& g : graphs) {
    edit_graph(b, g, [&](onnx::ModelProto& m) {
      for (auto& o : *m.mutable_graph()->mutable_output()) {
        if (o.name() == "sed_logits" || o.name() == "doa") {
          o.mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(2)->set_dim_value(tracks);
        }
      }
    });
  }
  edit_manifest(b, [&](json& m) {
    m["outputs"][0]["shape"][2] = tracks;
    m["outputs"][1]["shape"][2] = tracks;
  });
  write_npz(b / "golden.npz", {{"audio", {3, 4, 24000}}, {"sed_logits", {3, 10, tracks, 8}},
                               {"doa", {3, 10, tracks, 8, 3}}});
  rehash(b, "golden.npz");
}

}  // namespace

TEST(DeclaredShapes, FourTracksDeclaredThreeComputedIsRefusedNotReadPast) {
  fs::path b = copy_bundle();
  declare_tracks(b, {"model.fp32.onnx"}, 4);
  Runtime rt = Runtime::open(b);  // graph and manifest agree: the lie shows only when it runs
  std::vector<float> audio(4 * 4800, 0.01f);
  const std::string want = (b / "model.fp32.onnx").string() +
                           ": output sed_logits came back with shape (1, 2, 3, 8); the manifest says (1, 2, 4, 8)";
  auto e = error_of([&] { rt.predict(audio.data(), 4800); });
  EXPECT_EQ(e.kind(), ErrorKind::Check);
  EXPECT_EQ(std::string(e.what()), want);
  EXPECT_EQ(std::string(error_of([&] { rt.infer(audio.data(), 4800); }).what()), want);
  EXPECT_NE(std::string(error_of([&] { at2seld::verify(rt); }).what()).find("came back with shape (1, 10, 3, 8)"),
            std::string::npos);
}

TEST(DeclaredShapes, StreamGraphOfFourDeclaredTracksIsRefusedAtItsFirstHop) {
  fs::path b = scratch() / "stream";
  fs::copy(fixture("stream"), b, fs::copy_options::recursive);
  declare_tracks(b, {"model.fp32.onnx", "model.fp16.onnx", "stream.onnx"}, 4);
  Runtime rt = Runtime::open(b);
  at2seld::Streamer s = rt.stream();
  std::vector<float> audio(4 * 2400, 0.01f);
  auto e = error_of([&] { s.push(audio.data(), 2400); });
  EXPECT_EQ(e.kind(), ErrorKind::Check);
  EXPECT_EQ(std::string(e.what()), (b / "stream.onnx").string() +
                                       ": output sed_logits came back with shape (1, 1, 3, 8); the manifest says (1, 1, 4, 8)");
}

TEST(DeclaredShapes, EdgeRunAndAt2seldRunRefuseItAlike) {
  fs::path b = copy_bundle(), dir = b.parent_path() / "out";
  declare_tracks(b, {"model.fp32.onnx"}, 4);
  Result py = run(std::string(AT2SELD_EDGE) + " run " + quoted(fixture_wav()) + " --bundle " + quoted(b) + " --out " +
                  quoted(dir / "py.csv") + " --no-plot");
  Result cpp = run(std::string(AT2SELD_RUN_TOOL) + " " + quoted(fixture_wav()) + " --bundle " + quoted(b) + " --out " +
                   quoted(dir / "cpp.csv"));
  EXPECT_EQ(py.code, 1) << py.err;
  EXPECT_EQ(cpp.code, 1) << cpp.err;
  EXPECT_EQ(error_line(cpp.err), error_line(py.err));
  EXPECT_NE(error_line(cpp.err).find("output sed_logits came back with shape (1, 40, 3, 8)"), std::string::npos) << cpp.err;
  EXPECT_FALSE(fs::exists(dir / "cpp.csv"));
}
