// The bundle as a trust boundary: Runtime::open refuses, with one message naming the file and
// the problem, every bundle the Python loader refuses. The cases are the refusal corpus
// (tests/deploy/refusals.json), which the pytest suite runs too (tests/deploy/test_bundle_trust.py,
// whose tests/deploy/tamper.py applies each operation as this file does).
#include "helpers.hpp"

using namespace testing_helpers;
using at2seld::ErrorKind;
using at2seld::Runtime;

class EveryPrecision : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryPrecision, OpensWhatEdgeBuildWrote) {
  Runtime rt = Runtime::open(fixture(GetParam()));
  EXPECT_EQ(rt.manifest().precision, GetParam());
  EXPECT_EQ(rt.manifest().class_names.size(), rt.manifest().thresholds.size());
  EXPECT_EQ(rt.backend_name(), "onnxruntime (CPUExecutionProvider)");
}

INSTANTIATE_TEST_SUITE_P(Bundles, EveryPrecision, ::testing::Values("fp32", "fp16", "int8"));

namespace {

// ---- the corpus's operations (its $comment describes them), each as tamper.py does it

json& at(json& doc, const json& path, size_t drop = 0) {
  json* node = &doc;
  for (size_t i = 0; i + drop < path.size(); ++i) {
    node = path[i].is_number() ? &(*node)[path[i].get<size_t>()] : &(*node)[path[i].get<std::string>()];
  }
  return *node;
}

void set_value(json& m, const json& op) {
  json value = op.contains("value") ? op["value"] : at(m, op["value_from"]);
  json& parent = at(m, op["at"], 1);
  const json& last = op["at"].back();
  if (last.is_number()) {
    parent[last.get<size_t>()] = value;
  } else {
    parent[last.get<std::string>()] = value;
  }
}

void erase(json& m, const json& op) {
  json& parent = at(m, op["at"], 1);
  const json& last = op["at"].back();
  if (last.is_number()) {
    parent.erase(last.get<size_t>());
  } else {
    parent.erase(last.get<std::string>());
  }
}

// The top-level key's value replaced by raw JSON text (what no JSON writer would write).
void raw(const fs::path& b, const json& op) {
  std::string text = op.value("text", "");
  for (const json& piece : op.value("pieces", json::array())) {
    for (int i = 0; i < piece[1].get<int>(); ++i) text += piece[0].get<std::string>();
  }
  json m = read_manifest(b);
  const json sentinel = std::string("\0raw", 4);
  m[op["key"].get<std::string>()] = sentinel;
  std::string doc = m.dump(2);
  doc.replace(doc.find(sentinel.dump()), sentinel.dump().size(), text);
  std::ofstream(b / "manifest.json", std::ios::trunc) << doc;
}

void flip_byte(const fs::path& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.get(c);
  f.seekp(offset);
  f.put(static_cast<char>(c ^ 0xff));
}

// A file that begins as a serialized plan does: the tag, and a size recorded at byte 16.
void write_engine(const fs::path& path, const std::string& tag, uint64_t recorded, size_t size) {
  std::string bytes = tag + std::string(size - tag.size(), '\0');
  for (int k = 0; k < 8; ++k) bytes[16 + k] = static_cast<char>((recorded >> (8 * k)) & 0xff);
  std::ofstream(path, std::ios::binary) << bytes;
}

void npz(const fs::path& path, const json& op) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> arrays;
  for (const json& a : op["arrays"]) arrays.push_back({a[0], a[1].get<std::vector<int64_t>>()});
  write_npz(path, arrays, op.value("descr", "<f4"), op.value("header_only", false));
}

// An ONNX graph read from `from` (default: `file`), edited and written to `file` (not re-hashed).
void graph(const fs::path& b, const json& op, const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto model;
  {
    std::ifstream in(b / op.value("from", op["file"].get<std::string>()), std::ios::binary);
    ASSERT_TRUE(model.ParseFromIstream(&in)) << op.dump();
  }
  edit(model);
  std::ofstream out(b / op["file"].get<std::string>(), std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(model.SerializeToOstream(&out)) << op.dump();
}

void custom_op(onnx::ModelProto& m, const json& op) {
  onnx::NodeProto* n = m.mutable_graph()->mutable_node(op["node"].get<int>());
  n->set_domain(op["domain"]);
  n->set_op_type(op["op_type"]);
  n->set_name(op["name"]);
  auto* opset = m.add_opset_import();
  opset->set_domain(op["domain"]);
  opset->set_version(1);
}

void rename_output(onnx::ModelProto& m, const json& op) {
  const std::string from = op["output"], to = op["to"];
  for (auto& n : *m.mutable_graph()->mutable_node()) {
    for (auto& o : *n.mutable_output()) o = o == from ? to : o;
  }
  for (auto& o : *m.mutable_graph()->mutable_output()) {
    if (o.name() == from) o.set_name(to);
  }
}

// The first initializer's bytes moved to FILE.data, as onnx's external data writes them.
void externalize(const fs::path& b, onnx::ModelProto& m, const std::string& name) {
  onnx::TensorProto* t = m.mutable_graph()->mutable_initializer(0);
  std::ofstream(b / (name + ".data"), std::ios::binary) << t->raw_data();
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = t->add_external_data();
  location->set_key("location");
  location->set_value(name + ".data");
  t->clear_raw_data();
}

using Operation = std::function<void(const fs::path& b, const json& op, const fs::path& file)>;

// The corpus's operations by name (tamper.py's OPS).
const std::map<std::string, Operation>& operations() {
  auto manifest = [](void (*edit)(json&, const json&)) -> Operation {
    return [edit](const fs::path& b, const json& op, const fs::path&) { edit_manifest(b, [&](json& m) { edit(m, op); }); };
  };
  auto onnx_edit = [](void (*edit)(onnx::ModelProto&, const json&, const fs::path&)) -> Operation {
    return [edit](const fs::path& b, const json& op, const fs::path&) {
      graph(b, op, [&](onnx::ModelProto& m) { edit(m, op, b); });
    };
  };
  static const std::map<std::string, Operation> all = {
      {"set", manifest(set_value)},
      {"delete", manifest(erase)},
      {"append", manifest([](json& m, const json& op) { at(m, op["at"]).push_back(op["value"]); })},
      {"raw", [](const fs::path& b, const json& op, const fs::path&) { raw(b, op); }},
      {"write", [](const fs::path&, const json& op, const fs::path& file) {
         fs::create_directories(file.parent_path());
         std::ofstream(file, std::ios::trunc) << op["text"].get<std::string>();
       }},
      {"remove", [](const fs::path&, const json&, const fs::path& file) { fs::remove(file); }},
      {"copy", [](const fs::path& b, const json& op, const fs::path& file) {
         fs::copy_file(b / op["from"].get<std::string>(), file, fs::copy_options::overwrite_existing);
       }},
      {"symlink", [](const fs::path&, const json& op, const fs::path& file) {
         fs::create_symlink(op["target"].get<std::string>(), file);
       }},
      {"flip_byte", [](const fs::path&, const json& op, const fs::path& file) { flip_byte(file, op["offset"]); }},
      {"engine", [](const fs::path&, const json& op, const fs::path& file) {
         write_engine(file, op["tag"], op["recorded"], op["bytes"]);
       }},
      {"npz", [](const fs::path&, const json& op, const fs::path& file) { npz(file, op); }},
      {"rehash", [](const fs::path& b, const json& op, const fs::path&) { rehash(b, op["file"]); }},
      {"custom_op", onnx_edit([](onnx::ModelProto& m, const json& op, const fs::path&) { custom_op(m, op); })},
      {"rename_output", onnx_edit([](onnx::ModelProto& m, const json& op, const fs::path&) { rename_output(m, op); })},
      {"externalize", onnx_edit([](onnx::ModelProto& m, const json& op, const fs::path& b) {
         externalize(b, m, op["file"]);
       })},
  };
  return all;
}

// ---- the corpus

struct Refusal {
  std::string id;
  json spec;
};

void PrintTo(const Refusal& r, std::ostream* os) { *os << r.id; }

std::vector<Refusal> corpus() {
  std::ifstream in(AT2SELD_REFUSALS);
  const json doc = json::parse(in);
  std::vector<Refusal> out;
  for (const json& c : doc["cases"]) out.push_back({c["id"], c});
  return out;
}

// The line a refusal begins with (the whole line unless the case gives message_begins) and its kind.
std::pair<std::string, ErrorKind> expected(const json& c, const fs::path& b) {
  static const std::map<std::string, std::pair<std::string, ErrorKind>> stages = {
      {"bundle", {": ", ErrorKind::Input}},
      {"manifest", {"/manifest.json: ", ErrorKind::Input}},
      {"integrity", {": bundle integrity check failed: ", ErrorKind::Check}},
      {"contract", {": the manifest does not describe its files: ", ErrorKind::Check}}};
  const auto& [prefix, kind] = stages.at(c["refused_at"].get<std::string>());
  std::string message = c.value("message", c.value("message_begins", ""));
  const std::string version = "{version}";
  if (auto i = message.find(version); i != std::string::npos) message.replace(i, version.size(), AT2SELD_TOOLKIT_VERSION);
  return {b.string() + prefix + message, kind};
}

}  // namespace

class Corpus : public ::testing::TestWithParam<Refusal> {};

// ONNX Runtime named: a refusal comes before any backend is chosen, and an accepted engine here
// is no plan TensorRT could run.
TEST_P(Corpus, RefusedInOneLineAsPythonRefusesIt) {
  const json& c = GetParam().spec;
  fs::path b = scratch() / "b";
  fs::copy(fixture(c["fixture"].get<std::string>()), b, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  for (const json& op : c["tamper"]) {
    auto it = operations().find(op["op"].get<std::string>());
    ASSERT_NE(it, operations().end()) << "an operation the C++ suite does not implement: " << op.dump();
    it->second(b, op, b / op.value("file", ""));
    if (HasFatalFailure()) return;
  }
  if (c.value("accepted", false)) {
    EXPECT_NO_THROW(Runtime::open(b, at2seld::Backend::OnnxRuntime));
    return;
  }
  auto [want, kind] = expected(c, b);
  auto e = error_of([&] { Runtime::open(b, at2seld::Backend::OnnxRuntime); });
  const std::string got = e.what();
  EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  if (c.contains("message")) {
    EXPECT_EQ(got, want);
  } else {
    EXPECT_EQ(got.rfind(want, 0), 0u) << "got: " << got << "\nwant: " << want << "...";
  }
  EXPECT_EQ(e.kind(), kind) << got;
}

INSTANTIATE_TEST_SUITE_P(Refusals, Corpus, ::testing::ValuesIn(corpus()), [](const auto& info) { return info.param.id; });
