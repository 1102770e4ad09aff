// Audio checks shared by the wav reader and the runtime.
#pragma once

#include <cstdint>
#include <string>

namespace at2seld::detail {

// "N non-finite sample(s) (NaN or Inf), the first at sample S of channel C" for planar
// 4-channel audio (the earliest sample, then the lowest channel, as runtime.non_finite), or "".
std::string describe_non_finite(const float* audio, int64_t samples);

}  // namespace at2seld::detail
