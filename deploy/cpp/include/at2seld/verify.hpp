// The golden check: a backend must reproduce the golden (PyTorch FP32) outputs of the bundle's
// golden inputs under the manifest's tolerances, as `edge verify` judges them.
#pragma once

#include <string>
#include <vector>

#include "at2seld/runtime.hpp"

namespace at2seld {

struct Comparison {
  int input = 0;
  double max_abs_logit = 0, max_abs_doa = 0, decision_agreement = 0;
  double mean_doa_error_deg = 0, p95_doa_error_deg = 0;
  std::vector<std::string> failures;
};

struct AT2SELD_API VerifyReport {
  std::string backend, precision;
  std::map<std::string, std::optional<double>> tolerances;
  std::vector<Comparison> rows;

  bool passed() const;
  std::vector<std::string> failures() const;
  std::string markdown() const;  // as VerifyReport.markdown() in Python
};

AT2SELD_API VerifyReport verify(Runtime& runtime);

}  // namespace at2seld
