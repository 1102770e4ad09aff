#include "at2seld/verify.hpp"

#include <cmath>

#include "decode.hpp"
#include "npz.hpp"
#include "util.hpp"

namespace at2seld {
namespace {

// The manifest's tolerance keys in the order Python's model_dump() gives them.
const std::vector<std::string> kToleranceKeys = {"max_abs_logit", "max_abs_doa", "min_decision_agreement",
                                                 "max_mean_doa_error_deg", "max_p95_doa_error_deg"};

struct Outputs {
  const float* logits;
  const float* doa;
};

// One golden input: the backend's outputs against the reference's (verify.compare in Python).
Comparison compare(Outputs ref, Outputs got, size_t n_logits, const std::vector<float>& thresholds,
                   const std::map<std::string, std::optional<double>>& tol, int index) {
  const size_t C = thresholds.size();
  Comparison c;
  c.input = index;
  std::vector<double> err;
  size_t agree = 0;
  float max_logit = 0, max_doa = 0;
  for (size_t i = 0; i < n_logits; ++i) {
    bool ref_on = detail::sigmoid(ref.logits[i]) > double{thresholds[i % C]};
    bool got_on = detail::sigmoid(got.logits[i]) > double{thresholds[i % C]};
    agree += ref_on == got_on;
    if (ref_on) err.push_back(detail::angular_distance(got.doa + 3 * i, ref.doa + 3 * i));
    max_logit = std::max(max_logit, std::abs(got.logits[i] - ref.logits[i]));
    for (size_t k = 0; k < 3; ++k) max_doa = std::max(max_doa, std::abs(got.doa[3 * i + k] - ref.doa[3 * i + k]));
  }
  if (err.empty()) err.push_back(0.0);
  double sum = 0;
  for (double e : err) sum += e;
  c.max_abs_logit = max_logit;
  c.max_abs_doa = max_doa;
  c.decision_agreement = static_cast<double>(agree) / static_cast<double>(n_logits);
  c.mean_doa_error_deg = sum / static_cast<double>(err.size());
  c.p95_doa_error_deg = detail::percentile(err, 95);
  const std::vector<std::pair<double, bool>> measured = {  // value, at most (else at least)
      {c.max_abs_logit, true}, {c.max_abs_doa, true}, {c.decision_agreement, false},
      {c.mean_doa_error_deg, true}, {c.p95_doa_error_deg, true}};
  for (size_t k = 0; k < kToleranceKeys.size(); ++k) {
    auto limit = tol.at(kToleranceKeys[k]);
    auto [value, at_most] = measured[k];
    if (limit && !(at_most ? value <= *limit : value >= *limit)) {
      std::string key = kToleranceKeys[k].substr(4);  // drops "max_" / "min_"
      c.failures.push_back(detail::format("input %d: %s %.4g (must be %s %g)", index, key.c_str(), value,
                                          at_most ? "<=" : ">=", *limit));
    }
  }
  return c;
}

}  // namespace

bool VerifyReport::passed() const { return failures().empty(); }

std::vector<std::string> VerifyReport::failures() const {
  std::vector<std::string> out;
  for (const Comparison& r : rows) out.insert(out.end(), r.failures.begin(), r.failures.end());
  return out;
}

std::string VerifyReport::markdown() const {
  std::string tol;
  for (const std::string& key : kToleranceKeys) {
    auto it = tolerances.find(key);
    if (it != tolerances.end() && it->second) tol += (tol.empty() ? "" : ", ") + key + detail::format(" %g", *it->second);
  }
  std::vector<std::vector<std::string>> table;
  for (const Comparison& r : rows) {
    table.push_back({std::to_string(r.input), detail::format("%.2e", r.max_abs_logit), detail::format("%.2e", r.max_abs_doa),
                     detail::format("%.2f%%", 100.0 * r.decision_agreement), detail::format("%.3f", r.mean_doa_error_deg),
                     detail::format("%.3f", r.p95_doa_error_deg), r.failures.empty() ? "PASS" : "FAIL"});
  }
  return "verify: " + backend + ", " + precision + " bundle, tolerances: " + tol + "\n\n" +
         detail::markdown_table({"input", "max abs logit diff", "max abs DOA diff", "SED decisions agree",
                                 "mean DOA err deg", "p95 DOA err deg", "result"},
                                table) +
         "\n";
}

VerifyReport verify(Runtime& runtime) {
  const Manifest& m = runtime.manifest();
  auto golden = detail::read_npz(runtime.root() / m.golden);  // shapes checked when the bundle was opened
  const auto& audio = golden.at("audio");
  const auto& logits = golden.at("sed_logits");
  const auto& doa = golden.at("doa");
  const int64_t n = audio.shape[0], samples = audio.shape[2];
  const size_t per_logits = logits.data.size() / static_cast<size_t>(n);
  VerifyReport report{runtime.backend_name(), m.precision, m.tolerances, {}};
  for (int64_t i = 0; i < n; ++i) {
    auto got = runtime.infer(audio.data.data() + i * 4 * samples, samples);
    if (got.at("sed_logits").data.size() != per_logits) {
      throw Error(runtime.root().string() + ": the model's outputs for golden input " + std::to_string(i) +
                  " do not have golden.npz's shape", ErrorKind::Check);
    }
    Outputs ref{logits.data.data() + i * per_logits, doa.data.data() + i * per_logits * 3};
    Outputs out{got.at("sed_logits").data.data(), got.at("doa").data.data()};
    report.rows.push_back(compare(ref, out, per_logits, m.thresholds, m.tolerances, static_cast<int>(i)));
  }
  return report;
}

}  // namespace at2seld
