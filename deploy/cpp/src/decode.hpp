// From model outputs to DCASE rows, number for number as at2seld_edge.evaluation.decode and
// metrics.angular_distance compute them (numpy's float32/float64 steps kept).
#pragma once

#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld::detail {

constexpr float kMergeDeg = 15.0f;  // same-class tracks closer than this are one source

// 1 / (1 + exp(-x)) in float64, as evaluation.decode.sigmoid.
double sigmoid(float logit);

// Degrees between two vectors of any norm, in float32 as numpy computes it on float32 arrays.
float angular_distance(const float* a, const float* b);

// Active tracks (probability above the class threshold) of frames [0, p.frames) as detections,
// frame offset `first_frame`; same-class tracks within kMergeDeg merged (vectors averaged).
std::vector<Detection> decode(const Prediction& p, const std::vector<float>& thresholds, int64_t first_frame = 0);

}  // namespace at2seld::detail
