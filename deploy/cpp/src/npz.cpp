#include "npz.hpp"

#include <zip.h>

#include <memory>
#include <regex>

#include "at2seld/runtime.hpp"
#include "util.hpp"

namespace at2seld::detail {
namespace {

struct Member {
  zip_file_t* file;
  const std::string& where;

  void read(void* out, size_t n) {
    if (zip_fread(file, out, n) != static_cast<zip_int64_t>(n)) throw Error(where + ": truncated array");
  }
};

// The .npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 24000), }
const std::map<std::string, std::string> kDtypes = {
    {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"<i8", "int64"}, {"<i4", "int32"},
    {"<i2", "int16"},   {"|i1", "int8"},    {"|u1", "uint8"},   {"|b1", "bool"},  {"|O", "object"}};

// Bytes per element of a descr as numpy counts them: the number after the kind ('<f4': 4),
// 4 per character for 'U', a pointer for an object.
int itemsize_of(const std::string& descr) {
  static const std::regex sized(R"(^[<>|=]([a-zA-Z])([0-9]{1,6})$)");
  std::smatch m;
  if (descr == "|O") return 8;
  if (!std::regex_match(descr, m, sized)) return 0;
  return (m[1] == "U" ? 4 : 1) * std::stoi(m[2].str());
}

NpyArray parse_header(const std::string& header, const std::string& where) {
  static const std::regex descr(R"('descr':\s*'([^']*)')"), order(R"('fortran_order':\s*(True|False))"),
      shape(R"('shape':\s*\(([0-9,\s]*)\))");
  std::smatch d, o, s;
  if (!std::regex_search(header, d, descr) || !std::regex_search(header, o, order) ||
      !std::regex_search(header, s, shape)) {
    throw Error(where + ": not a .npy array header");
  }
  if (o[1] == "True") throw Error(where + ": Fortran-order array; expected C order");
  NpyArray a;
  auto known = kDtypes.find(d[1].str());
  a.dtype = known != kDtypes.end() ? known->second : d[1].str();
  a.itemsize = itemsize_of(d[1].str());
  std::vector<int64_t>& dims = a.shape;
  std::string text = s[1];
  static const std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it) {
    if (it->length() > 18) throw Error(where + ": .npy shape " + s[1].str().substr(0, 40) + " is out of range");
    dims.push_back(std::stoll(it->str()));
  }
  return a;
}

NpyArray read_member(Member m, bool with_data) {
  unsigned char magic[8];
  m.read(magic, sizeof magic);
  if (std::string(reinterpret_cast<char*>(magic), 6) != "\x93NUMPY") throw Error(m.where + ": not a .npy array");
  size_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char len[2];
    m.read(len, 2);
    header_len = len[0] | (len[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    unsigned char len[4];
    m.read(len, 4);
    header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<size_t>(len[3]) << 24);
  } else {
    throw Error(m.where + ": .npy format version " + std::to_string(magic[6]) + " is not supported");
  }
  if (header_len > (1 << 20)) throw Error(m.where + ": .npy header too large");
  std::string header(header_len, '\0');
  m.read(header.data(), header_len);
  NpyArray a = parse_header(header, m.where);
  if (!with_data || a.dtype != "float32") return a;
  if (a.bytes() > static_cast<double>(uint64_t{1} << 34)) throw Error(m.where + ": array too large");
  size_t n = 1;
  for (int64_t d : a.shape) n *= static_cast<size_t>(d);
  a.data.resize(n);
  m.read(a.data.data(), n * sizeof(float));
  return a;
}

}  // namespace

double NpyArray::bytes() const {
  double n = itemsize;
  for (int64_t d : shape) n *= static_cast<double>(d);
  return n;
}

std::string NpyArray::shape_text() const { return detail::shape_text(shape); }

std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path, bool with_data) {
  int err = 0;
  std::unique_ptr<zip_t, decltype(&zip_discard)> zip(zip_open(path.c_str(), ZIP_RDONLY, &err), zip_discard);
  if (!zip) {
    zip_error_t e;
    zip_error_init_with_code(&e, err);
    std::string why = zip_error_strerror(&e);
    zip_error_fini(&e);
    throw Error(path.string() + ": not a readable .npz file (" + why + ")");
  }
  std::map<std::string, NpyArray> out;
  zip_int64_t n = zip_get_num_entries(zip.get(), 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* raw = zip_get_name(zip.get(), static_cast<zip_uint64_t>(i), 0);
    if (!raw) throw Error(path.string() + ": member " + std::to_string(i) + " has no readable name");
    std::string name = raw;
    std::string where = path.string() + ": " + name;
    if (name.size() < 5 || name.substr(name.size() - 4) != ".npy") throw Error(where + ": not a .npy member");
    std::unique_ptr<zip_file_t, decltype(&zip_fclose)> file(zip_fopen_index(zip.get(), static_cast<zip_uint64_t>(i), 0),
                                                            zip_fclose);
    if (!file) throw Error(where + ": cannot open it (" + zip_strerror(zip.get()) + ")");
    zip_stat_t st;
    zip_stat_init(&st);
    zip_stat_index(zip.get(), static_cast<zip_uint64_t>(i), 0, &st);
    NpyArray& a = out[name.substr(0, name.size() - 4)] = read_member(Member{file.get(), where}, with_data);
    a.zip_bytes = (st.valid & ZIP_STAT_SIZE) ? st.size : 0;
  }
  return out;
}

}  // namespace at2seld::detail
