#include "decode.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util.hpp"

namespace at2seld::detail {

double sigmoid(float logit) { return 1.0 / (1.0 + std::exp(-static_cast<double>(logit))); }

float angular_distance(const float* a, const float* b) {
  float na = std::max(std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]), 1e-10f);
  float nb = std::max(std::sqrt(b[0] * b[0] + b[1] * b[1] + b[2] * b[2]), 1e-10f);
  float dot = (a[0] / na) * (b[0] / nb) + (a[1] / na) * (b[1] / nb) + (a[2] / na) * (b[2] / nb);
  dot = std::min(1.0f, std::max(-1.0f, dot));
  return std::acos(dot) * (180.0f / static_cast<float>(M_PI));  // numpy's float32 rad2deg
}

std::vector<Detection> decode(const Prediction& p, const std::vector<float>& thresholds, int64_t first_frame) {
  std::vector<Detection> out;
  const int N = p.tracks, C = p.classes;
  auto prob = [&](int64_t t, int n, int c) { return p.probabilities[(t * N + n) * C + c]; };
  auto vec = [&](int64_t t, int n, int c) { return &p.doa[((t * N + n) * C + c) * 3]; };
  for (int64_t t = 0; t < p.frames; ++t) {
    std::vector<Detection> dets;
    for (int c = 0; c < C; ++c) {
      std::vector<int> tracks;
      for (int n = 0; n < N; ++n) {
        if (prob(t, n, c) > thresholds[c]) tracks.push_back(n);
      }
      std::stable_sort(tracks.begin(), tracks.end(), [&](int x, int y) { return prob(t, x, c) > prob(t, y, c); });
      std::vector<std::vector<int>> kept;
      for (int n : tracks) {
        auto group = std::find_if(kept.begin(), kept.end(), [&](const std::vector<int>& g) {
          return angular_distance(vec(t, g[0], c), vec(t, n, c)) < kMergeDeg;
        });
        if (group != kept.end()) {
          group->push_back(n);
        } else {
          kept.push_back({n});
        }
      }
      for (const auto& group : kept) {
        float v[3] = {0, 0, 0};
        for (int n : group) {
          for (int k = 0; k < 3; ++k) v[k] += vec(t, n, c)[k];
        }
        for (float& x : v) x /= static_cast<float>(group.size());
        float norm = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) + 1e-12f;
        dets.push_back(Detection{first_frame + t, c, group[0], {v[0] / norm, v[1] / norm, v[2] / norm}});
      }
    }
    std::sort(dets.begin(), dets.end(),
              [](const Detection& a, const Detection& b) { return std::tie(a.cls, a.track) < std::tie(b.cls, b.track); });
    out.insert(out.end(), dets.begin(), dets.end());
  }
  return out;
}

}  // namespace at2seld::detail

namespace at2seld {

namespace {
constexpr double kDegrees = 180.0 / M_PI;  // numpy's rad2deg: x * (180 / pi)
}

double Detection::azimuth_deg() const { return std::atan2(double{xyz[1]}, double{xyz[0]}) * kDegrees; }

double Detection::elevation_deg() const {
  return std::atan2(double{xyz[2]}, std::hypot(double{xyz[0]}, double{xyz[1]})) * kDegrees;
}

void write_dcase_csv(const std::filesystem::path& path, const std::vector<Detection>& detections) {
  std::string text;
  for (const Detection& d : detections) {
    text += detail::format("%lld,%d,%d,%.2f,%.2f\n", static_cast<long long>(d.frame), d.cls, d.track, d.azimuth_deg(),
                           d.elevation_deg());
  }
  detail::atomic_write_text(path, text);
}

}  // namespace at2seld
