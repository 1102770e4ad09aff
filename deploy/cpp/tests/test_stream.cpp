// Streaming through the library, on the streaming bundle `edge build --streaming` writes (the
// embedded causal default): frames equal the whole-clip inference whatever the piece sizes, each
// frame comes out as its hop completes, and the state is the manifest's. (A bundle whose stream
// graph disagrees with its manifest: the stream cases of tests/deploy/refusals.json, test_bundle.cpp.)
#include <cmath>
#include <random>

#include "at2seld/bench.hpp"
#include "helpers.hpp"

using namespace testing_helpers;
using at2seld::ErrorKind;
using at2seld::Runtime;

namespace {

// The first `n` samples of each channel of the fixture wav, planar.
std::vector<float> clip(const at2seld::Audio& wav, int64_t n) {
  std::vector<float> out(static_cast<size_t>(4 * n));
  for (int64_t c = 0; c < 4; ++c) std::copy_n(wav.data.begin() + c * wav.samples, n, out.begin() + c * n);
  return out;
}

// Samples [from, from + n) of each channel of a planar clip of `total` samples.
std::vector<float> piece(const std::vector<float>& audio, int64_t total, int64_t from, int64_t n) {
  std::vector<float> out(static_cast<size_t>(4 * n));
  for (int64_t c = 0; c < 4; ++c) std::copy_n(audio.begin() + c * total + from, n, out.begin() + c * n);
  return out;
}

}  // namespace

TEST(Stream, ManifestNamesEveryStateWithItsShape) {
  Runtime rt = Runtime::open(fixture("stream"));
  const at2seld::Manifest& m = rt.manifest();
  ASSERT_TRUE(m.causal && m.stream);
  const at2seld::StreamSpec& s = *m.stream;
  EXPECT_EQ(s.graph, "stream.onnx");
  EXPECT_EQ(s.hop_samples, 2400);
  EXPECT_EQ(s.lookahead_samples, 0);
  json j = read_manifest(fixture("stream"))["stream"];
  ASSERT_EQ(s.states.size(), j["states"].size());
  int64_t bytes = 0;
  for (size_t i = 0; i < s.states.size(); ++i) {
    EXPECT_EQ(s.states[i].input, j["states"][i]["input"]);
    EXPECT_EQ(s.states[i].shape, j["states"][i]["shape"].get<std::vector<int64_t>>());
    bytes += 4 * s.states[i].elements();
  }
  EXPECT_EQ(s.state_bytes(), bytes);
  EXPECT_GT(bytes, 0);
}

class RandomPieces : public ::testing::TestWithParam<unsigned> {};

TEST_P(RandomPieces, StreamedFramesEqualTheWholeClip) {
  Runtime rt = Runtime::open(fixture("stream"));
  at2seld::Audio wav = at2seld::read_foa(fixture_wav(), rt.manifest().sample_rate);
  const int64_t n = wav.samples - 777;  // a ragged tail: its part-frame is dropped by both
  std::vector<float> audio = clip(wav, n);
  at2seld::Prediction whole = rt.predict(audio.data(), n);
  ASSERT_GT(whole.frames, rt.manifest().stream->history_frames);  // past the attention window
  at2seld::Streamer streamer = rt.stream();
  std::mt19937 rng(GetParam());
  std::uniform_int_distribution<int64_t> size(300, 7000);
  std::vector<float> probs, doa;
  std::vector<at2seld::Detection> detections;
  int64_t frames = 0;
  for (int64_t i = 0; i < n;) {
    const int64_t k = std::min(size(rng), n - i);
    std::vector<float> p = piece(audio, n, i, k);
    i += k;
    at2seld::StreamFrames got = streamer.push(p.data(), k, i == n);
    EXPECT_EQ(got.first_frame, frames);
    frames += got.frames.frames;
    probs.insert(probs.end(), got.frames.probabilities.begin(), got.frames.probabilities.end());
    doa.insert(doa.end(), got.frames.doa.begin(), got.frames.doa.end());
    detections.insert(detections.end(), got.frames.detections.begin(), got.frames.detections.end());
  }
  ASSERT_EQ(frames, whole.frames);
  ASSERT_EQ(probs.size(), whole.probabilities.size());
  for (size_t i = 0; i < probs.size(); ++i) ASSERT_NEAR(probs[i], whole.probabilities[i], 1e-5) << i;
  for (size_t i = 0; i < doa.size(); ++i) ASSERT_NEAR(doa[i], whole.doa[i], 1e-4) << i;
  ASSERT_FALSE(detections.empty());
  for (const at2seld::Detection& d : detections) EXPECT_LT(d.frame, frames);
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomPieces, ::testing::Values(0u, 1u));

TEST(Stream, EachFrameComesOutAsItsHopCompletes) {
  Runtime rt = Runtime::open(fixture("stream"));
  at2seld::Audio wav = at2seld::read_foa(fixture_wav(), rt.manifest().sample_rate);
  std::vector<float> audio = clip(wav, 4 * 2400);
  at2seld::Streamer s = rt.stream();
  EXPECT_EQ(s.push(piece(audio, 9600, 0, 2399).data(), 2399).frames.frames, 0);
  at2seld::StreamFrames one = s.push(piece(audio, 9600, 2399, 1).data(), 1);
  EXPECT_EQ(one.frames.frames, 1);
  at2seld::StreamFrames two = s.push(piece(audio, 9600, 2400, 4805).data(), 4805);
  EXPECT_EQ(two.first_frame, 1);
  EXPECT_EQ(two.frames.frames, 2);
  EXPECT_EQ(s.push(piece(audio, 9600, 7205, 2395).data(), 2395, true).frames.frames, 1);
  at2seld::StreamFrames again = s.push(piece(audio, 9600, 0, 2400).data(), 2400);  // final: a new stream
  EXPECT_EQ(again.first_frame, 0);
  EXPECT_EQ(again.frames.probabilities, one.frames.probabilities);
}

TEST(Stream, NonFiniteAudioIsRefused) {
  Runtime rt = Runtime::open(fixture("stream"));
  at2seld::Streamer s = rt.stream();
  std::vector<float> audio(4 * 100, 0.0f);
  audio[3 * 100 + 7] = INFINITY;
  EXPECT_EQ(std::string(error_of([&] { s.push(audio.data(), 100); }).what()),
            "stream: 1 non-finite sample(s) (NaN or Inf), the first at sample 7 of channel 3; `edge run --repair` "
            "zeros them");
}

TEST(Stream, NonCausalBundleDoesNotStream) {
  Runtime rt = Runtime::open(fixture("fp32"));
  auto e = error_of([&] { rt.stream(); });
  EXPECT_EQ(e.kind(), ErrorKind::Usage);
  EXPECT_EQ(std::string(e.what()), fixture("fp32").string() +
                                       ": this model is not causal, so it does not stream; build a streaming bundle: "
                                       "`edge build --streaming` (the embedded causal default) or a causal checkpoint "
                                       "(smoother.causal: true)");
}

TEST(Stream, BenchTimesTheHopAndReportsTheState) {
  Runtime rt = Runtime::open(fixture("stream"));
  at2seld::BenchReport r = at2seld::bench(rt, 4, 1);
  ASSERT_TRUE(r.stream_hop.has_value());
  EXPECT_EQ(r.stream_hop->runs, 4);
  EXPECT_EQ(*r.stream_state_bytes, rt.manifest().stream->state_bytes());
  EXPECT_DOUBLE_EQ(*r.sound_to_detection_ms, r.stream_hop->median_ms);  // no lookahead
  json j = json::parse(r.json());
  EXPECT_EQ(j["stream_state_bytes"], *r.stream_state_bytes);
  EXPECT_NE(r.markdown().find("streaming, one 100 ms hop"), std::string::npos);
}
