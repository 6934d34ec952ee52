// Model files (see kancore/model_io.hpp): safetensors with the kancore config in __metadata__.
// The loader validates everything before it allocates the network.
#include "kancore/model_io.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.hpp"

static_assert(std::endian::native == std::endian::little,
              "kancore model files are little-endian; add byte swapping for this host");

namespace kancore {
namespace {

constexpr std::uint64_t kMaxHeader = std::uint64_t{16} << 20;
constexpr std::uint64_t kMaxDim = std::uint64_t{1} << 40;
constexpr std::size_t kMaxRank = 8;

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("kancore: model file: " + what);
}

const char* st_dtype(DType d) { return d == DType::float64 ? "F64" : "F32"; }
std::size_t elem(DType d) { return d == DType::float64 ? 8 : 4; }

std::string config_json(const NetworkConfig& c) {
  std::string s = "{\"dtype\": " + json::quote(to_string(c.dtype)) +
                  ", \"layernorm\": " + (c.layernorm ? "true" : "false") +
                  ", \"layernorm_eps\": " + json::number(c.layernorm_eps) + ", \"layers\": [";
  for (std::size_t j = 0; j < c.layers.size(); ++j) {
    const LayerConfig& l = c.layers[j];
    if (j) s += ", ";
    if (l.kind == LayerKind::c0) {
      s += "{\"kind\": \"c0\", \"in_features\": " + std::to_string(l.in_features) +
           ", \"out_features\": " + std::to_string(l.out_features) +
           ", \"num_control_points\": " + std::to_string(l.num_control_points) +
           ", \"spline_width\": " + json::number(l.spline_width) +
           ", \"fitted_domain\": " + (l.fitted_domain ? "true" : "false") + "}";
    } else {
      s += "{\"kind\": \"bspline\", \"in_features\": " + std::to_string(l.in_features) +
           ", \"out_features\": " + std::to_string(l.out_features) +
           ", \"grid_size\": " + std::to_string(l.grid_size) +
           ", \"spline_order\": " + std::to_string(l.spline_order) + "}";
    }
    if (!l.symbolic.empty()) {  // format version 2
      s.pop_back();
      s += ", \"symbolic\": [";
      for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
        const SymbolicEdge& e = l.symbolic[r];
        s += (r ? ", " : "") + std::string("{\"in\": ") + std::to_string(e.in) + ", \"out\": " +
             std::to_string(e.out) + ", \"function\": " + json::quote(e.function) + "}";
      }
      s += "]}";
    }
  }
  return s + "]}";
}

// --- reading ---------------------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype = DType::float32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what) {
  if (a != 0 && b > (~std::uint64_t{0}) / a) bad(what + ": size overflows 64 bits");
  return a * b;
}

Entry read_entry(const std::string& name, const json::Value& v, std::uint64_t data_len) {
  if (!v.is(json::Value::Type::object)) bad("expected tensor \"" + name + "\" to be an object");
  Entry e;
  e.name = name;
  const json::Value* dt = v.find("dtype");
  const json::Value* sh = v.find("shape");
  const json::Value* of = v.find("data_offsets");
  if (!dt || !sh || !of) bad("tensor \"" + name + "\" needs dtype, shape and data_offsets");
  if (v.keys.size() != 3) bad("tensor \"" + name + "\" has keys other than dtype, shape and data_offsets");
  const std::string& d = json::as_string(*dt, "a tensor dtype");
  if (d == "F32") e.dtype = DType::float32;
  else if (d == "F64") e.dtype = DType::float64;
  else bad("expected dtype F32 or F64 for \"" + name + "\", got \"" + d + "\"");
  if (!sh->is(json::Value::Type::array) || sh->items.size() > kMaxRank) {
    bad("expected the shape of \"" + name + "\" to be an array of at most 8 sizes");
  }
  std::uint64_t numel = 1;
  for (const auto& s : sh->items) {
    const std::uint64_t n = json::as_u64(s, "a shape entry");
    if (n > kMaxDim) bad("shape entry " + std::to_string(n) + " of \"" + name + "\" is absurd");
    e.shape.push_back(static_cast<std::int64_t>(n));
    numel = checked_mul(numel, n, name);
  }
  if (!of->is(json::Value::Type::array) || of->items.size() != 2) {
    bad("expected data_offsets of \"" + name + "\" to be [begin, end]");
  }
  e.begin = json::as_u64(of->items[0], "a data offset");
  e.end = json::as_u64(of->items[1], "a data offset");
  if (e.begin > e.end || e.end > data_len) {
    bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] of \"" + name +
        "\" fall outside the data section of " + std::to_string(data_len) + " bytes");
  }
  const std::uint64_t bytes = checked_mul(numel, elem(e.dtype), name);
  if (bytes != e.end - e.begin) {
    bad("tensor \"" + name + "\" has " + std::to_string(e.end - e.begin) + " bytes, its shape needs " +
        std::to_string(bytes));
  }
  return e;
}

std::int64_t get_int(const json::Value& o, const char* key, const std::string& at) {
  const json::Value* v = o.find(key);
  if (!v) bad(at + "missing \"" + key + "\"");
  const std::uint64_t n = json::as_u64(*v, at + key);
  if (n > kMaxDim) bad(at + key + " = " + std::to_string(n) + " is absurd");
  return static_cast<std::int64_t>(n);
}

const json::Value& get(const json::Value& o, const char* key, const std::string& at) {
  const json::Value* v = o.find(key);
  if (!v) bad(at + "missing \"" + key + "\"");
  return *v;
}

NetworkConfig read_config(const std::string& text, int version) {
  json::Limits lim;
  lim.max_depth = 8;
  lim.max_elements = 1u << 18;
  const json::Value c = json::parse(text, lim);
  if (!c.is(json::Value::Type::object)) bad("expected the config to be a JSON object");
  NetworkConfig cfg;
  const std::string& dt = json::as_string(get(c, "dtype", "config: "), "config dtype");
  if (dt == "float32") cfg.dtype = DType::float32;
  else if (dt == "float64") cfg.dtype = DType::float64;
  else bad("expected config dtype float32 or float64, got \"" + dt + "\"");
  cfg.layernorm = json::as_bool(get(c, "layernorm", "config: "), "layernorm");
  cfg.layernorm_eps = json::as_double(get(c, "layernorm_eps", "config: "), "layernorm_eps");
  const json::Value& layers = get(c, "layers", "config: ");
  if (!layers.is(json::Value::Type::array)) bad("expected config layers to be an array");
  for (std::size_t j = 0; j < layers.items.size(); ++j) {
    const json::Value& L = layers.items[j];
    const std::string at = "layer " + std::to_string(j) + ": ";
    if (!L.is(json::Value::Type::object)) bad(at + "expected an object");
    const std::string& kind = json::as_string(get(L, "kind", at), "layer kind");
    LayerConfig l;
    l.in_features = get_int(L, "in_features", at);
    l.out_features = get_int(L, "out_features", at);
    if (kind == "c0") {
      l.kind = LayerKind::c0;
      l.num_control_points = get_int(L, "num_control_points", at);
      l.spline_width = json::as_double(get(L, "spline_width", at), "spline_width");
      l.fitted_domain = json::as_bool(get(L, "fitted_domain", at), "fitted_domain");
    } else if (kind == "bspline") {
      l.kind = LayerKind::bspline;
      l.grid_size = get_int(L, "grid_size", at);
      l.spline_order = get_int(L, "spline_order", at);
    } else {
      bad(at + "unknown kind \"" + kind + "\" (expected c0 or bspline)");
    }
    if (const json::Value* sym = L.find("symbolic")) {
      if (version < 2) bad(at + "symbolic edges need format_version \"2\", the file says \"1\"");
      if (!sym->is(json::Value::Type::array)) bad(at + "expected \"symbolic\" to be an array");
      for (const json::Value& e : sym->items) {
        if (!e.is(json::Value::Type::object)) bad(at + "expected each symbolic edge to be an object");
        l.symbolic.push_back({get_int(e, "in", at + "symbolic edge: "), get_int(e, "out", at + "symbolic edge: "),
                              json::as_string(get(e, "function", at + "symbolic edge: "), "symbolic function")});
      }
    }
    cfg.layers.push_back(l);
  }
  try {
    validate(cfg);
  } catch (const std::invalid_argument& e) {
    bad(std::string("invalid config: ") + e.what());
  }
  return cfg;
}

// Name -> shape of every tensor the config implies, in file order.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_tensors(const NetworkConfig& c) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> out;
  for (std::size_t j = 0; j < c.layers.size(); ++j) {
    const LayerConfig& l = c.layers[j];
    const std::string p = "layers." + std::to_string(j) + ".";
    const std::int64_t I = l.in_features, O = l.out_features;
    if (l.kind == LayerKind::c0) {
      out.push_back({p + "kan_weight", {I, l.num_control_points, O}});
      if (l.fitted_domain) {
        out.push_back({p + "input_scale", {I}});
        out.push_back({p + "input_offset", {I}});
      }
    } else {
      const std::int64_t G = l.grid_size, k = l.spline_order;
      out.push_back({p + "grid", {I, G + 2 * k + 1}});
      out.push_back({p + "base_weight", {O, I}});
      out.push_back({p + "spline_weight", {O, I, G + k}});
      out.push_back({p + "spline_scaler", {O, I}});
    }
    if (!l.symbolic.empty()) out.push_back({p + "symbolic_affine", {static_cast<std::int64_t>(l.symbolic.size()), 4}});
  }
  if (c.layernorm) {
    for (std::size_t j = 0; j + 1 < c.layers.size(); ++j) {
      out.push_back({"norms." + std::to_string(j) + ".weight", {c.layers[j].out_features}});
      out.push_back({"norms." + std::to_string(j) + ".bias", {c.layers[j].out_features}});
    }
  }
  return out;
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

template <class T>
void check_finite(const T* v, std::int64_t n, const std::string& name) {
  for (std::int64_t m = 0; m < n; ++m) {
    if (!std::isfinite(v[m])) bad("\"" + name + "\" must be finite (entry " + std::to_string(m) + ")");
  }
}

bool ends_with(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

template <class T>
void check_knots(const T* v, std::int64_t rows, std::int64_t n, const std::string& name) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t m = 0; m < n; ++m) {
      const T x = v[i * n + m];
      if (!std::isfinite(x) || (m > 0 && x < v[i * n + m - 1])) {
        bad("\"" + name + "\" must hold finite, non-decreasing knots per feature (row " + std::to_string(i) + ")");
      }
    }
}

// --- writing ---------------------------------------------------------------------------------

void write_all(int fd, const char* p, std::size_t n, const std::string& tmp) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("kancore: writing " + tmp + " failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

std::string serialize(const Network& net_const) {
  // tensors() hands out mutable views; here they are only read.
  Network& net = const_cast<Network&>(net_const);
  const auto views = net.tensors();
  const NetworkConfig& cfg = net.config();
  // Version 2 adds symbolic edges; a file without them stays version 1, readable by older readers.
  const bool symbolic = std::any_of(cfg.layers.begin(), cfg.layers.end(), [](const LayerConfig& l) { return !l.symbolic.empty(); });
  std::string header = std::string("{\"__metadata__\": {\"format\": \"kancore.network\", \"format_version\": \"") +
                       (symbolic ? "2" : "1") + "\", \"config\": " +
                       json::quote(config_json(cfg)) + "}";
  std::uint64_t offset = 0;
  for (const auto& v : views) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(v.numel()) * elem(v.dtype);
    header += ", " + json::quote(v.name) + ": {\"dtype\": \"" + st_dtype(v.dtype) + "\", \"shape\": [";
    for (std::size_t i = 0; i < v.shape.size(); ++i) header += (i ? ", " : "") + std::to_string(v.shape[i]);
    header += "], \"data_offsets\": [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out;
  out.reserve(8 + header.size() + offset);
  const std::uint64_t n = header.size();
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((n >> (8 * b)) & 0xFF));
  out += header;
  for (const auto& v : views) {
    out.append(static_cast<const char*>(v.data), static_cast<std::size_t>(v.numel()) * elem(v.dtype));
  }
  return out;
}

namespace {

[[noreturn]] void foreign(const std::string& reason) { throw NotAModelFile("kancore", reason); }

// The header's "__metadata__" must say "format": "kancore.network"; anything else (no metadata,
// another program's safetensors file) is a foreign file. Returns the metadata object.
const json::Value& kancore_metadata(const json::Value& h) {
  const json::Value* meta = h.find("__metadata__");
  if (!meta) foreign("a safetensors header without __metadata__");
  if (!meta->is(json::Value::Type::object)) foreign("__metadata__ is not an object");
  const json::Value* fmt = meta->find("format");
  if (!fmt) foreign("no \"format\" in __metadata__");
  if (!fmt->is(json::Value::Type::string) || fmt->text != "kancore.network") {
    foreign("__metadata__ format is not \"kancore.network\"");
  }
  return *meta;
}

}  // namespace

Network deserialize(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  // First decide whether these bytes are a kancore model file at all (a pickle, text or another
  // program's file is reported as foreign); after that, every error is a precise "corrupt" one.
  if (size < 8 || !data) {
    foreign(std::to_string(size) + " bytes, shorter than the 8-byte safetensors header length");
  }
  std::uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | bytes[b];
  const std::uint64_t follow = size - 8;  // bytes after the length
  const bool brace = follow > 0 && bytes[8] == '{';
  if (n > kMaxHeader) foreign("header length " + std::to_string(n) + " exceeds the limit of 16 MiB");
  if (n > 0 && follow > 0 && !brace) foreign("the safetensors header does not start with '{'");
  if (n > follow) {
    // A plausible length and a '{' after it (or nothing at all): a kancore file cut short.
    bad("truncated: header length " + std::to_string(n) + " but only " + std::to_string(follow) +
        " bytes follow");
  }
  const std::uint64_t data_len = size - 8 - n;
  const unsigned char* section = bytes + 8 + n;
  json::Limits lim;
  lim.max_depth = 8;
  lim.max_elements = 1u << 18;
  json::Value h;
  try {
    h = json::parse(std::string_view(reinterpret_cast<const char*>(bytes + 8), n), lim);
  } catch (const std::invalid_argument& e) {
    bad(std::string("header: ") + e.what());
  }
  if (!h.is(json::Value::Type::object)) bad("expected the header to be a JSON object");
  const json::Value* meta = &kancore_metadata(h);

  std::vector<Entry> entries;
  for (std::size_t m = 0; m < h.keys.size(); ++m) {
    const std::string& name = h.keys[m];
    if (name == "__metadata__") continue;
    entries.push_back(read_entry(name, h.items[m], data_len));
  }
  for (std::size_t m = 0; m < meta->keys.size(); ++m) {
    if (!meta->items[m].is(json::Value::Type::string)) {
      bad("__metadata__ value \"" + meta->keys[m] + "\" must be a string");
    }
  }
  const json::Value* ver = meta->find("format_version");
  if (!ver || (ver->text != "1" && ver->text != "2")) {
    bad("expected format_version \"1\" or \"2\", got " + (ver ? "\"" + ver->text + "\"" : std::string("none")));
  }
  const json::Value* cfg_text = meta->find("config");
  if (!cfg_text) bad("missing __metadata__ config");
  NetworkConfig cfg;
  try {
    cfg = read_config(cfg_text->text, ver->text == "2" ? 2 : 1);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    if (what.rfind("kancore: model file:", 0) == 0) throw;
    bad("config: " + what);
  }

  // Offsets: back to back from 0, no overlap, covering the data section exactly.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t at = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != at) {
      bad("tensor \"" + e->name + "\" starts at byte " + std::to_string(e->begin) + ", expected " +
          std::to_string(at) + " (tensors must be back to back without overlap)");
    }
    at = e->end;
  }
  if (at != data_len) {
    bad("the tensors cover " + std::to_string(at) + " bytes of a " + std::to_string(data_len) +
        "-byte data section");
  }

  // The tensors must be exactly the ones the config implies.
  const auto want = expected_tensors(cfg);
  if (want.size() != entries.size()) {
    bad("the config implies " + std::to_string(want.size()) + " tensors, the file has " +
        std::to_string(entries.size()));
  }
  std::map<std::string_view, const Entry*> by_name;
  for (const auto& e : entries) by_name[e.name] = &e;
  for (const auto& [name, shape] : want) {
    auto it = by_name.find(name);
    if (it == by_name.end()) bad("missing tensor \"" + name + "\"");
    const Entry& e = *it->second;
    if (e.dtype != cfg.dtype) bad("tensor \"" + name + "\" is " + st_dtype(e.dtype) + ", the config says " + to_string(cfg.dtype));
    if (e.shape != shape) bad("tensor \"" + name + "\" has shape " + shape_text(e.shape) + ", expected " + shape_text(shape));
  }

  Network net(cfg, 0);
  for (auto& v : net.tensors()) {
    const Entry& e = *by_name.at(v.name);
    std::memcpy(v.data, section + e.begin, static_cast<std::size_t>(e.end - e.begin));
    if (ends_with(v.name, ".grid")) {
      if (cfg.dtype == DType::float64) check_knots(static_cast<const double*>(v.data), v.shape[0], v.shape[1], v.name);
      else check_knots(static_cast<const float*>(v.data), v.shape[0], v.shape[1], v.name);
    } else if (ends_with(v.name, ".input_scale") || ends_with(v.name, ".input_offset")) {
      // A fitted C0 domain: the Python loader requires it finite too (the kernels would give NaN).
      if (cfg.dtype == DType::float64) check_finite(static_cast<const double*>(v.data), v.shape[0], v.name);
      else check_finite(static_cast<const float*>(v.data), v.shape[0], v.name);
    }
  }
  return net;
}

// std::string carries an embedded NUL, the C file API stops at it: a different file would be used.
static void check_no_nul(const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    throw std::invalid_argument("kancore: expected a file path without NUL characters");
  }
}

void save(const Network& net, const std::string& path) {
  if (path.empty()) throw std::invalid_argument("kancore: save: expected a file path, got an empty string");
  check_no_nul(path);
  const std::string bytes = serialize(net);
  // Never write (and never replace a good file with) one the loader refuses: NaN or decreasing
  // knots set through set_tensor, a non-finite fitted domain...
  try {
    (void)deserialize(bytes.data(), bytes.size());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("kancore: save " + path + ": the network would not load back: " + e.what());
  }
  // 0666 & ~umask, as a plain open() would give; an existing file keeps its own mode.
  struct stat old{};
  const bool replacing = ::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode);
  // A short random name in the target's directory (the rename must not cross filesystems):
  // derived from `path` it could exceed NAME_MAX for a long file name, or meet a stale file.
  std::string tmp;
  int fd = -1;
  {
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::random_device rd;
    for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
      char name[40];
      std::snprintf(name, sizeof name, ".kancore-%08x%08x.tmp", rd(), rd());
      tmp = (dir / name).string();
      fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0 && errno != EEXIST) break;
    }
  }
  if (fd < 0) throw std::runtime_error("kancore: cannot create " + tmp + ": " + std::strerror(errno));
  bool open = true;
  try {
    if (replacing) ::fchmod(fd, old.st_mode & 07777);
    write_all(fd, bytes.data(), bytes.size(), tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("kancore: fsync of " + tmp + " failed: " + std::strerror(errno));
    open = false;  // close releases the descriptor even when it reports an error
    if (::close(fd) != 0) {
      throw std::runtime_error("kancore: closing " + tmp + " failed: " + std::strerror(errno));
    }
  } catch (...) {
    if (open) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("kancore: cannot replace " + path + ": " + std::strerror(err));
  }
  // Make the rename durable too (best effort: not every filesystem can fsync a directory).
  const std::string dir = std::filesystem::path(path).has_parent_path()
                              ? std::filesystem::path(path).parent_path().string() : std::string(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Network load(const std::string& path) {
  check_no_nul(path);
  // A directory opens as a stream on Linux and reports an absurd size: require a regular file.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (st.type() == std::filesystem::file_type::not_found) throw FileNotFound(path);
  if (st.type() != std::filesystem::file_type::regular) {
    throw std::runtime_error("kancore: cannot load " + path + ": " +
                             (ec ? ec.message() : std::string("not a regular file")));
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (errno == ENOENT) throw FileNotFound(path);  // removed since the status call
    throw std::runtime_error("kancore: cannot open " + path + ": " + std::strerror(errno));
  }
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0) throw std::runtime_error("kancore: cannot read " + path);
  f.seekg(0);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !f.read(bytes.data(), size)) throw std::runtime_error("kancore: cannot read " + path);
  try {
    return deserialize(bytes.data(), bytes.size());
  } catch (const NotAModelFile& e) {
    throw NotAModelFile(path, e.reason());
  }
}

}  // namespace kancore
