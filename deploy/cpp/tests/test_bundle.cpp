// The bundle as a trust boundary: Runtime::open refuses, with one message naming the file and
// the problem, every bundle the Python loader refuses.
#include "helpers.hpp"

using namespace testing_helpers;
using at2seld::ErrorKind;
using at2seld::Runtime;

namespace {

std::string open_error(const fs::path& bundle) {
  return error_of([&] { Runtime::open(bundle); }).what();
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
                 "key `tolerances.max_mean_doa_error_deg`: Input should be less than or equal to 30 (got 90)"},
        Contract{"input_name", [](json& m) { m["inputs"][0]["name"] = "sound"; },
                 "model.fp32.onnx: inputs ['audio'], the manifest says ['sound']", ErrorKind::Check},
        Contract{"output_dtype", [](json& m) { m["outputs"][1]["dtype"] = "float16"; },
                 "model.fp32.onnx: output doa has element type 1, the manifest says float16", ErrorKind::Check},
        Contract{"rank", [](json& m) { m["outputs"][1]["shape"].push_back(1); },
                 "model.fp32.onnx: output doa has rank 5, the manifest says 6", ErrorKind::Check},
        Contract{"dynamic_axis", [](json& m) { m["inputs"][0]["shape"][1] = "channels"; },
                 "model.fp32.onnx: input audio axis 1 is 4 in the graph, 'channels' in the manifest", ErrorKind::Check},
        Contract{"qdq_unexpected",
                 [](json& m) {  // with the tolerances an int8 golden check judges by
                   m["precision"] = "int8";
                   m["tolerances"] = {{"min_decision_agreement", 0.95}, {"max_mean_doa_error_deg", 5.0},
                                      {"max_p95_doa_error_deg", 15.0}};
                 },
                 "model.fp32.onnx: the manifest says int8, but the graph has no QuantizeLinear/DequantizeLinear nodes",
                 ErrorKind::Check},
        Contract{"qdq_missing",
                 [](json& m) {
                   m["precision"] = "fp32";
                   m["tolerances"] = {{"max_abs_logit", 1e-3}, {"max_abs_doa", 1e-3}};
                 },
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

// ---- tampered bundles of issue 21: numbers, nesting, sizes and files that are not what they claim.
// Each is refused by Runtime::open with one message, and by the Python loader with the same one.

namespace {

// The manifest's text with the first `"key": value` replaced by `"key": raw` (raw JSON text).
void set_raw(const fs::path& bundle, const std::string& key, const std::string& raw) {
  std::string text = read_file(bundle / "manifest.json");
  std::string needle = "\"" + key + "\": ";
  size_t at = text.find(needle);
  ASSERT_NE(at, std::string::npos) << key;
  size_t from = at + needle.size(), to = text.find_first_of(",\n}", from);
  std::ofstream(bundle / "manifest.json", std::ios::trunc) << text.substr(0, from) + raw + text.substr(to);
}

// Moves the first initializer's weights into `name`.data beside it, as onnx.save(...,
// save_as_external_data=True) would, and hashes both files.
void externalize_weights(const fs::path& bundle, const std::string& name) {
  edit_graph(bundle, name, [&](onnx::ModelProto& m) {
    onnx::TensorProto* t = m.mutable_graph()->mutable_initializer(0);
    std::ofstream(bundle / (name + ".data"), std::ios::binary) << t->raw_data();
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* location = t->add_external_data();
    location->set_key("location");
    location->set_value(name + ".data");
    t->clear_raw_data();
  });
  rehash(bundle, name + ".data");
}

// A file that begins as a serialized plan would: the tag, and the size at byte 16.
void write_engine(const fs::path& path, const std::string& tag, uint64_t recorded, size_t size = 64) {
  std::string bytes = tag + std::string(size - tag.size(), '\0');
  for (int k = 0; k < 8; ++k) bytes[16 + k] = static_cast<char>((recorded >> (8 * k)) & 0xff);
  std::ofstream(path, std::ios::binary) << bytes;
}

void add_engine(const fs::path& b, const std::string& builder) {
  rehash(b, "model.engine");
  edit_manifest(b, [&](json& m) {
    m["engine"] = {{"file", "model.engine"}, {"builder", builder}, {"tensorrt_version", "10.3.0"},
                   {"gpu_name", "Orin"}, {"compute_capability", "8.7"}};
  });
}

struct Tamper {
  std::string label, bundle;  // the fixture it starts from
  std::function<void(const fs::path&)> edit;
  std::string expected;       // after "manifest.json: " (Input) or "BUNDLE: the manifest does not describe its files: "
  ErrorKind kind = ErrorKind::Input;
};

void PrintTo(const Tamper& t, std::ostream* os) { *os << t.label; }

const std::string kBigInt(5000, '9');

const std::vector<Tamper>& tampers() {
  static const std::vector<Tamper> all = {
      {"int_5000_digits", "fp32", [](const fs::path& b) { set_raw(b, "label_hop_samples", kBigInt); },
       "not readable JSON (number 99999999999999999999... (5,000 characters) is out of range)"},
      {"int_past_64_bits", "fp32", [](const fs::path& b) { set_raw(b, "label_hop_samples", "18446744073709551616"); },
       "not readable JSON (number 18446744073709551616 is out of range)"},
      {"int_past_int64", "fp32", [](const fs::path& b) { set_raw(b, "sample_rate", "9223372036854775808"); },
       "not readable JSON (number 9223372036854775808 is out of range)"},
      {"float_overflow", "fp32", [](const fs::path& b) { set_raw(b, "label_hop_s", "1e400"); },
       "not readable JSON (number 1e400 is out of range)"},
      {"nesting_10000_deep", "fp32",
       [](const fs::path& b) { set_raw(b, "steps", std::string(10000, '[') + std::string(10000, ']')); },
       "not readable JSON (nested deeper than 32 levels)"},
      {"hop_huge", "fp32", [](const fs::path& b) { set_raw(b, "label_hop_s", "1e308"); },
       "key `label_hop_s`: Input should be less than or equal to 60 (got 1e+308)"},
      {"window_huge", "fp32", [](const fs::path& b) { edit_manifest(b, [](json& m) { m["window"]["max_samples"] = int64_t{1} << 40; }); },
       "key `window.max_samples`: Input should be less than or equal to 134217728 (got 1099511627776)"},
      {"tracks_axis_huge", "fp32", [](const fs::path& b) { edit_manifest(b, [](json& m) { m["outputs"][0]["shape"][2] = 3000000000; }); },
       "key `outputs.0.shape.2.constrained-int`: Input should be less than or equal to 2147483647 (got 3000000000); "
       "key `outputs.0.shape.2.str`: Input should be a valid string (got 3000000000)"},
      {"no_tolerances", "fp32", [](const fs::path& b) { edit_manifest(b, [](json& m) { m["tolerances"] = json::object(); }); },
       "tolerances: max_abs_logit, max_abs_doa missing; the fp32 golden check judges by them"},
      {"golden_bomb", "fp32",
       [](const fs::path& b) {  // consistent shapes the window allows, 1.16 GB declared (the data is not there)
         write_npz(b / "golden.npz", {{"audio", {50, 4, 1440000}}, {"sed_logits", {50, 600, 3, 8}},
                                      {"doa", {50, 600, 3, 8, 3}}}, "<f4", true);
         rehash(b, "golden.npz");
       },
       "golden.npz: its arrays hold 1,163,520,000 bytes; a golden file holds at most 1,073,741,824", ErrorKind::Check},
      {"fp16_external_data", "fp16", [](const fs::path& b) { externalize_weights(b, "model.fp16.onnx"); },
       "model.fp16.onnx: its weights point to external data files; a bundle's graphs hold their own weights",
       ErrorKind::Check},
      {"custom_op", "fp32",
       [](const fs::path& b) {
         edit_graph(b, "model.fp32.onnx", [](onnx::ModelProto& m) {
           m.mutable_graph()->mutable_node(0)->set_domain("com.example");
           auto* opset = m.add_opset_import();
           opset->set_domain("com.example");
           opset->set_version(1);
         });
       },
       "", ErrorKind::Check},  // the node's name and operator: checked in the test
      {"engine_is_a_graph", "fp32",
       [](const fs::path& b) {
         fs::copy_file(b / "model.fp32.onnx", b / "model.engine");
         add_engine(b, "tensorrt");
       },
       "model.engine: not a TensorRT engine (a serialized plan begins with the tag ftrt, vtrt or qtrt)", ErrorKind::Check},
      {"rtx_engine_cut", "fp32",
       [](const fs::path& b) {
         write_engine(b / "model.engine", "vtrt", 4096);
         add_engine(b, "tensorrt-rtx");
       },
       "model.engine: not a whole TensorRT-RTX engine (its header records 4,096 bytes, the file holds 64)",
       ErrorKind::Check},
      {"outname_both", "fp32",
       [](const fs::path& b) {
         edit_graph(b, "model.fp32.onnx", [](onnx::ModelProto& m) {
           for (auto& n : *m.mutable_graph()->mutable_node()) {
             for (auto& o : *n.mutable_output()) o = o == "doa" ? "direction" : o;
           }
           m.mutable_graph()->mutable_output(1)->set_name("direction");
         });
         edit_manifest(b, [](json& m) { m["outputs"][1]["name"] = "direction"; });
       },
       "the runtime takes one float32 input (1, 4, samples) and float32 outputs sed_logits (1, frames, tracks, "
       "classes) and doa (1, frames, tracks, classes, 3) with a fixed number of tracks"},
  };
  return all;
}

// The bundle of one tamper case, in `dir`.
fs::path tampered(const Tamper& t, const fs::path& dir) {
  fs::path b = dir / t.label;
  fs::copy(fixture(t.bundle), b, fs::copy_options::recursive);
  t.edit(b);
  return b;
}

std::string expected_message(const fs::path& b, const Tamper& t) {
  return (t.kind == ErrorKind::Check ? b.string() + ": the manifest does not describe its files: "
                                     : (b / "manifest.json").string() + ": ") + t.expected;
}

}  // namespace

class Tampered : public ::testing::TestWithParam<Tamper> {};

TEST_P(Tampered, IsRefusedInOneLine) {
  const Tamper& t = GetParam();
  fs::path b = tampered(t, scratch());
  auto e = error_of([&] { Runtime::open(b); });
  EXPECT_EQ(e.kind(), t.kind);
  std::string got = e.what();
  EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  if (t.label == "custom_op") {
    onnx::ModelProto m;
    std::ifstream in(b / "model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&in));
    const auto& n = m.graph().node(0);
    EXPECT_EQ(got, expected_message(b, t) + "model.fp32.onnx: node '" + n.name() + "' is the custom operator com.example::" +
                       n.op_type() + "; a bundle's graphs use standard ONNX operators only");
  } else {
    EXPECT_EQ(got, expected_message(b, t));
  }
}

INSTANTIATE_TEST_SUITE_P(Issue21, Tampered, ::testing::ValuesIn(tampers()),
                         [](const auto& info) { return info.param.label; });

TEST(Tampered, PythonRefusesEachWithTheSameMessage) {
  const fs::path dir = scratch();
  std::vector<fs::path> bundles;
  std::string list;
  for (const Tamper& t : tampers()) {
    bundles.push_back(tampered(t, dir));
    list += " " + quoted(bundles.back());
  }
  // edge's loader on every bundle in one process: its messages, one per line
  const std::string script =
      "import sys\nfrom at2seld_edge.deploy.bundle import load_bundle\nfrom at2seld_edge.errors import EdgeError\n"
      "for b in sys.argv[1:]:\n    try:\n        load_bundle(b); print('loaded')\n"
      "    except EdgeError as e:\n        print(e)\n";
  std::ofstream(dir / "refusals.py") << script;
  Result py = run(venv_python() + " " + quoted(dir / "refusals.py") + list);
  ASSERT_EQ(py.code, 0) << py.err;
  std::stringstream lines(py.out);
  for (const fs::path& b : bundles) {
    std::string line;
    std::getline(lines, line);
    EXPECT_EQ(line, open_error(b)) << b.filename();
  }
}

TEST(Tampered, APlausibleEngineIsAccepted) {
  // the tag and (TensorRT-RTX) the recorded size of a real plan pass; ONNX Runtime runs the bundle
  fs::path b = copy_bundle();
  write_engine(b / "model.engine", "ftrt", 0);
  add_engine(b, "tensorrt");
  EXPECT_NO_THROW(Runtime::open(b, at2seld::Backend::OnnxRuntime));
  write_engine(b / "model.engine", "vtrt", 64);
  add_engine(b, "tensorrt-rtx");
  EXPECT_NO_THROW(Runtime::open(b, at2seld::Backend::OnnxRuntime));
}
