// The bundle as a trust boundary: Runtime::open refuses, with one message naming the file and
// the problem, every bundle the Python loader refuses.
#include <openssl/evp.h>
#include <zip.h>

#include "helpers.hpp"

using namespace testing_helpers;
using at2seld::ErrorKind;
using at2seld::Runtime;

namespace {

std::string sha256_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

// Records `name`'s current bytes in the manifest, as a rebuilt bundle would.
void rehash(const fs::path& bundle, const std::string& name) {
  edit_manifest(bundle, [&](json& m) {
    m["files"][name] = {{"sha256", sha256_of(bundle / name)}, {"bytes", fs::file_size(bundle / name)}};
  });
}

std::string open_error(const fs::path& bundle) {
  return error_of([&] { Runtime::open(bundle); }).what();
}

// A .npz of float32 arrays with the given shapes (data zero), or a raw header for `descr`.
void write_npz(const fs::path& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& arrays,
               const std::string& descr = "<f4") {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  std::vector<std::string> blobs;
  blobs.reserve(arrays.size());
  for (const auto& [name, shape] : arrays) {
    std::string dims;
    size_t n = 1;
    for (int64_t d : shape) {
      dims += std::to_string(d) + ", ";
      n *= static_cast<size_t>(d);
    }
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    header += std::string(63 - (10 + header.size()) % 64, ' ') + "\n";
    std::string blob = std::string("\x93NUMPY\x01\x00", 8);
    blob += static_cast<char>(header.size() & 0xff);
    blob += static_cast<char>(header.size() >> 8);
    blob += header + std::string(n * 4, '\0');
    blobs.push_back(blob);
    zip_source_t* src = zip_source_buffer(z, blobs.back().data(), blobs.back().size(), 0);
    zip_file_add(z, (name + ".npy").c_str(), src, ZIP_FL_OVERWRITE);
  }
  zip_close(z);
}

}  // namespace

class EveryPrecision : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryPrecision, OpensWhatEdgeBuildWrote) {
  Runtime rt = Runtime::open(fixture(GetParam()));
  EXPECT_EQ(rt.manifest().precision, GetParam());
  EXPECT_EQ(rt.manifest().class_names.size(), rt.manifest().thresholds.size());
  EXPECT_EQ(rt.backend_name(), "onnxruntime (CPUExecutionProvider)");
}

INSTANTIATE_TEST_SUITE_P(Bundles, EveryPrecision, ::testing::Values("fp32", "fp16", "int8"));

TEST(Integrity, ChangedFileIsRefused) {
  fs::path b = copy_bundle();
  {
    std::fstream f(b / "model.fp32.onnx", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.put('\x7f');
  }
  auto e = error_of([&] { Runtime::open(b); });
  EXPECT_EQ(e.kind(), ErrorKind::Check);
  EXPECT_EQ(std::string(e.what()), b.string() + ": bundle integrity check failed: model.fp32.onnx: sha256 differs "
                                                "from the manifest (changed after the build)");
}

TEST(Integrity, MissingFileIsRefused) {
  fs::path b = copy_bundle();
  fs::remove(b / "lint.md");
  EXPECT_EQ(open_error(b), b.string() + ": bundle integrity check failed: lint.md: missing");
}

TEST(Integrity, UnlistedFilesAreRefusedDotFilesToo) {
  fs::path b = copy_bundle();
  fs::create_directories(b / "profile" / "extra");
  std::ofstream(b / "profile" / "extra" / "notes.txt") << "not built";
  std::ofstream(b / ".hidden") << "not built";
  EXPECT_EQ(open_error(b), b.string() + ": bundle integrity check failed: .hidden: present but not listed in the "
                                        "manifest; profile/extra/notes.txt: present but not listed in the manifest");
}

TEST(Integrity, FileNamedButNotHashedIsRefused) {
  fs::path b = copy_bundle();
  const std::string script = read_manifest(b)["build_script"];
  edit_manifest(b, [&](json& m) { m["files"].erase(script); });
  EXPECT_EQ(open_error(b), b.string() + ": bundle integrity check failed: " + script + ": present but not listed in "
                                        "the manifest; " + script + ": named by the manifest but not hashed in it");
}

TEST(Integrity, SymlinkOutOfTheBundleIsRefused) {
  fs::path b = copy_bundle();
  fs::path outside = b.parent_path() / "outside.txt";
  std::ofstream(outside) << "secret";
  fs::create_symlink(outside, b / "escape.txt");
  edit_manifest(b, [&](json& m) { m["files"]["escape.txt"] = {{"sha256", sha256_of(outside)}, {"bytes", 6}}; });
  auto e = error_of([&] { Runtime::open(b); });
  EXPECT_EQ(e.kind(), ErrorKind::Check);
  EXPECT_EQ(std::string(e.what()), b.string() + ": bundle integrity check failed: escape.txt: a symlink out of the "
                                                "bundle (to " + outside.string() + ")");
}

class FileNames : public ::testing::TestWithParam<std::string> {};

TEST_P(FileNames, OnlyPlainRelativeNamesInsideTheBundle) {
  fs::path b = copy_bundle();
  const std::string name = GetParam();
  edit_manifest(b, [&](json& m) {
    m["golden"] = name;
    m["files"][name] = m["files"]["golden.npz"];
  });
  std::string e = open_error(b), why = "'" + name + "' is not a plain relative file name inside the bundle";
  EXPECT_EQ(e.rfind((b / "manifest.json").string() + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("key `golden`: " + why + " (got '" + name + "')"), std::string::npos) << e;
  EXPECT_NE(e.find("key `files." + name + ".[key]`: " + why), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(Bundles, FileNames,
                         ::testing::Values("../outside.txt", "sub/../../outside.txt", "/etc/hostname",
                                           "./golden.npz", "a//golden.npz", "c:golden.npz"));

TEST(Manifest, FormatAndMajorVersion) {
  fs::path b = copy_bundle();
  fs::path mpath = b / "manifest.json";
  edit_manifest(b, [](json& m) { m["format"] = "at2seld-edge.bundle/1"; });  // an older toolkit's bundle
  EXPECT_EQ(open_error(b), mpath.string() + ": bundle format 'at2seld-edge.bundle/1'; this toolkit (" +
                               read_manifest(fixture("fp32"))["toolkit_version"].get<std::string>() +
                               ") reads 'at2seld-edge.bundle/2'");
  edit_manifest(b, [](json& m) {
    m["format"] = "at2seld-edge.bundle/2";
    m["toolkit_version"] = "7.0.0";
  });
  EXPECT_NE(open_error(b).find(": made by at2seld-edge 7.0.0; this is "), std::string::npos);
}

TEST(Manifest, SchemaProblemsNameTheKey) {
  fs::path b = copy_bundle();
  edit_manifest(b, [](json& m) {
    m["window"].erase("samples");
    m["sample_rate"] = "fast";
    m["colour"] = "blue";
    m["files"]["lint.md"]["sha256"] = "abc";
  });
  std::string e = open_error(b);
  EXPECT_EQ(e.rfind((b / "manifest.json").string() + ": ", 0), 0u) << e;
  for (const char* part : {"key `window.samples`: required key is missing",
                           "key `sample_rate`: Input should be a valid integer (got 'fast')",
                           "key `colour`: unknown key (expected one of: format, toolkit_version,",
                           "key `files.lint.md.sha256`: String should match pattern '^[0-9a-f]{64}$' (got 'abc')"}) {
    EXPECT_NE(e.find(part), std::string::npos) << part << "\n" << e;
  }
}

TEST(Manifest, NotJson) {
  fs::path b = copy_bundle();
  std::ofstream(b / "manifest.json") << "{not json";
  EXPECT_EQ(open_error(b).rfind((b / "manifest.json").string() + ": not readable JSON (", 0), 0u);
  EXPECT_EQ(open_error(b / "profile"), (b / "profile").string() + ": not a bundle (no manifest.json)");
}

struct Contract {
  std::string label;
  std::function<void(json&)> edit;
  std::string expected;
  ErrorKind kind = ErrorKind::Input;  // the manifest's own problems; Check: it disagrees with its files
};

void PrintTo(const Contract& c, std::ostream* os) { *os << c.label; }

class ManifestContract : public ::testing::TestWithParam<Contract> {};

TEST_P(ManifestContract, NumbersAgreeWithEachOtherAndTheFiles) {
  fs::path b = copy_bundle(GetParam().label == "qdq_missing" ? "int8" : "fp32");
  edit_manifest(b, GetParam().edit);
  auto e = error_of([&] { Runtime::open(b); });
  EXPECT_EQ(e.kind(), GetParam().kind);
  std::string prefix = GetParam().kind == ErrorKind::Check ? b.string() + ": the manifest does not describe its files: "
                                                           : (b / "manifest.json").string() + ": ";
  EXPECT_EQ(std::string(e.what()), prefix + GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Bundles, ManifestContract,
    ::testing::Values(
        Contract{"thresholds", [](json& m) { m["thresholds"].erase(0); }, "7 thresholds for 8 classes"},
        Contract{"classes", [](json& m) { m["class_names"].push_back("extra"); m["thresholds"].push_back(0.5); },
                 "output sed_logits has shape [1, 'frames', 3, 8]; its class axis (4th) must be 9, the number of "
                 "class_names"},
        Contract{"repeated_class", [](json& m) { m["class_names"][1] = m["class_names"][0]; }, "class_names repeats a name"},
        Contract{"threshold_bound", [](json& m) { m["thresholds"][2] = 1.0; },
                 "key `thresholds.2`: Input should be less than 1 (got 1.0)"},
        Contract{"hop_zero", [](json& m) { m["label_hop_samples"] = 0; },
                 "key `label_hop_samples`: Input should be greater than 0 (got 0)"},
        Contract{"hop_seconds", [](json& m) { m["label_hop_samples"] = 4800; },
                 "label_hop_samples 4800 is not label_hop_s 0.1 x sample_rate 24000"},
        Contract{"hop_divides", [](json& m) { m["label_hop_samples"] = 7200; m["label_hop_s"] = 0.3; },
                 "window lengths 2400/24000/1440000 are not whole label hops of 7200 samples"},
        Contract{"window_order", [](json& m) { m["window"]["min_samples"] = 48000; },
                 "key `window`: window: min_samples 48000 <= samples 24000 <= max_samples 1440000 does not hold"},
        Contract{"static_window", [](json& m) { m["window"]["dynamic_time"] = false; },
                 "key `window`: window: a static window has min_samples = samples = max_samples"},
        Contract{"sample_rate", [](json& m) { m["sample_rate"] = 400000; },
                 "key `sample_rate`: Input should be less than or equal to 192000 (got 400000)"},
        Contract{"tolerance", [](json& m) { m["tolerances"]["max_mean_doa_error_deg"] = 90; },
                 "key `tolerances.max_mean_doa_error_deg`: Input should be less than or equal to 30.0 (got 90)"},
        Contract{"input_name", [](json& m) { m["inputs"][0]["name"] = "sound"; },
                 "model.fp32.onnx: inputs ['audio'], the manifest says ['sound']", ErrorKind::Check},
        Contract{"output_dtype", [](json& m) { m["outputs"][1]["dtype"] = "float16"; },
                 "model.fp32.onnx: output doa has element type 1, the manifest says float16", ErrorKind::Check},
        Contract{"rank", [](json& m) { m["outputs"][1]["shape"].push_back(1); },
                 "model.fp32.onnx: output doa has rank 5, the manifest says 6", ErrorKind::Check},
        Contract{"dynamic_axis", [](json& m) { m["inputs"][0]["shape"][1] = "channels"; },
                 "model.fp32.onnx: input audio axis 1 is 4 in the graph, 'channels' in the manifest", ErrorKind::Check},
        Contract{"qdq_unexpected", [](json& m) { m["precision"] = "int8"; },
                 "model.fp32.onnx: the manifest says int8, but the graph has no QuantizeLinear/DequantizeLinear nodes",
                 ErrorKind::Check},
        Contract{"qdq_missing", [](json& m) { m["precision"] = "fp32"; },
                 "model.int8.onnx: the manifest says fp32, but the graph is quantized (Q/DQ nodes)", ErrorKind::Check}),
    [](const auto& info) { return info.param.label; });

TEST(ModelIO, StaticDimsMustBeTheGraphs) {
  // 9 classes everywhere but in the graph (8): the manifest and golden.npz agree, the model not.
  fs::path b = copy_bundle();
  edit_manifest(b, [](json& m) {
    m["outputs"][0]["shape"][3] = 9;
    m["outputs"][1]["shape"][3] = 9;
    m["class_names"].push_back("extra");
    m["thresholds"].push_back(0.5);
  });
  write_npz(b / "golden.npz", {{"audio", {3, 4, 24000}}, {"sed_logits", {3, 10, 3, 9}}, {"doa", {3, 10, 3, 9, 3}}});
  rehash(b, "golden.npz");
  EXPECT_EQ(open_error(b), b.string() + ": the manifest does not describe its files: model.fp32.onnx: output "
                                        "sed_logits axis 3 is 8 in the graph, 9 in the manifest; model.fp32.onnx: output "
                                        "doa axis 3 is 8 in the graph, 9 in the manifest");
}

TEST(Golden, ArraysShapesAreChecked) {
  fs::path b = copy_bundle();
  write_npz(b / "golden.npz", {{"audio", {3, 4, 24000}}, {"sed_logits", {3, 10, 3, 7}}, {"doa", {3, 10, 3, 8, 3}}});
  rehash(b, "golden.npz");
  EXPECT_EQ(open_error(b), b.string() + ": the manifest does not describe its files: golden.npz: sed_logits is float32 "
                                        "(3, 10, 3, 7), expected float32 (3, 10, 3, 8)");
  write_npz(b / "golden.npz", {{"audio", {3, 4, 24000}}, {"sed_logits", {3, 10, 3, 8}}});
  rehash(b, "golden.npz");
  EXPECT_EQ(open_error(b), b.string() + ": the manifest does not describe its files: golden.npz: arrays ['audio', "
                                        "'sed_logits'], expected ['audio', 'doa', 'sed_logits']");
  write_npz(b / "golden.npz", {{"audio", {3, 4, 24000}}, {"sed_logits", {3, 10, 3, 8}}, {"doa", {3, 10, 3, 8, 3}}});
  rehash(b, "golden.npz");
  EXPECT_NO_THROW(Runtime::open(b));
}

TEST(Golden, PickledArraysAreNeverLoaded) {
  fs::path b = copy_bundle();
  write_npz(b / "golden.npz", {{"audio", {3}}, {"sed_logits", {3}}, {"doa", {3}}}, "|O");
  rehash(b, "golden.npz");
  EXPECT_EQ(open_error(b), b.string() + ": the manifest does not describe its files: golden.npz: not a golden file: "
                                        "it holds pickled objects (refused)");
}
