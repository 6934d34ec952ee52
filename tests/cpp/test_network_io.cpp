// Model files: save/load round trips bitwise, the write is atomic, and the loader rejects a
// catalogue of corrupt or hostile files with std::invalid_argument (never a crash).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kancore/model_io.hpp"
#include "kancore/network.hpp"

namespace {

using namespace kancore;
namespace fs = std::filesystem;

NetworkConfig small_config(DType dt, bool layernorm) {
  NetworkConfig c;
  c.dtype = dt;
  c.layernorm = layernorm;
  c.layers = {LayerConfig::c0(2, 3, 4, 3.0), LayerConfig::bspline(3, 1, 2, 1)};
  return c;
}

// Header text and data section of a file.
std::pair<std::string, std::string> split(const std::string& file) {
  std::uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | static_cast<unsigned char>(file[b]);
  return {file.substr(8, n), file.substr(8 + n)};
}

std::string join(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>((n >> (8 * b)) & 0xFF);
  return out + header + data;
}

void expect_rejected(const std::string& file, const std::string& what) {
  try {
    deserialize(file.data(), file.size());
    ADD_FAILURE() << "accepted: " << what;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kancore"), std::string::npos) << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": wrong exception type: " << e.what();
  }
}

// The valid file with `from` replaced by `to` in its header (which must contain it).
std::string with_header_edit(const std::string& file, const std::string& from, const std::string& to) {
  auto [h, d] = split(file);
  const auto at = h.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at == std::string::npos) return file;
  h.replace(at, from.size(), to);
  return join(h, d);
}

bool same_tensors(Network& a, Network& b) {
  auto ta = a.tensors(), tb = b.tensors();
  if (ta.size() != tb.size()) return false;
  for (std::size_t k = 0; k < ta.size(); ++k) {
    if (ta[k].name != tb[k].name || ta[k].shape != tb[k].shape || ta[k].dtype != tb[k].dtype) return false;
    const std::size_t n = static_cast<std::size_t>(ta[k].numel()) * (ta[k].dtype == DType::float64 ? 8 : 4);
    if (std::memcmp(ta[k].data, tb[k].data, n) != 0) return false;
  }
  return true;
}

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("kancore_io_" + name + "_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(ModelIO, RoundTripIsBitwise) {
  for (DType dt : {DType::float32, DType::float64}) {
    for (bool ln : {false, true}) {
      Network net(small_config(dt, ln), 3);
      std::vector<double> x64{0.3, -0.7, 1.9, 0.2, -2.5, 0.0};
      std::vector<float> x32(x64.begin(), x64.end());
      net.update_grids(3, dt == DType::float64 ? static_cast<const void*>(x64.data()) : x32.data());
      const fs::path dir = temp_dir("rt");
      const std::string path = (dir / "model.safetensors").string();
      save(net, path);
      Network back = load(path);
      EXPECT_TRUE(same_tensors(net, back));
      EXPECT_EQ(back.config().layers[0].fitted_domain, true);
      EXPECT_EQ(back.config().layernorm, ln);
      EXPECT_EQ(back.dtype(), dt);
      // Saving the loaded network gives the same bytes.
      EXPECT_EQ(serialize(back), serialize(net));
      std::ifstream f(path, std::ios::binary);
      const std::string on_disk((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      EXPECT_EQ(on_disk, serialize(net));
      EXPECT_EQ(on_disk.size() % 8, 0u);  // header padded to 8, tensors multiples of 4
      fs::remove_all(dir);
    }
  }
}

TEST(ModelIO, HeaderFollowsTheSpec) {
  Network net(small_config(DType::float32, true), 1);
  const auto [h, d] = split(serialize(net));
  EXPECT_EQ(h.size() % 8, 0u);
  EXPECT_NE(h.find("\"format\": \"kancore.network\""), std::string::npos);
  EXPECT_NE(h.find("\"format_version\": \"1\""), std::string::npos);
  EXPECT_NE(h.find("\"layers.0.kan_weight\": {\"dtype\": \"F32\", \"shape\": [2, 4, 3], \"data_offsets\": [0, 96]}"),
            std::string::npos) << h;
  EXPECT_NE(h.find("norms.0.weight"), std::string::npos);
  EXPECT_EQ(h.find("input_scale"), std::string::npos);  // not fitted: no input affine tensors
}

TEST(ModelIO, SaveIsAtomic) {
  const fs::path dir = temp_dir("atomic");
  Network net(small_config(DType::float64, false), 1);
  // The target is a non-empty directory: rename fails; nothing is left behind, nothing changes.
  const fs::path target = dir / "model.safetensors";
  fs::create_directories(target / "inside");
  EXPECT_THROW(save(net, target.string()), std::runtime_error);
  EXPECT_TRUE(fs::is_directory(target / "inside"));
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) entries += e.path() != target;
  EXPECT_EQ(entries, 0u) << "a temporary file was left behind";
  // A missing directory: throws, creates nothing.
  EXPECT_THROW(save(net, (dir / "no" / "such" / "m.safetensors").string()), std::runtime_error);
  // Overwriting an existing file replaces it whole.
  const fs::path file = dir / "m.safetensors";
  { std::ofstream(file) << "old contents"; }
  save(net, file.string());
  Network back = load(file.string());
  EXPECT_TRUE(same_tensors(net, back));
  fs::remove_all(dir);
}

TEST(ModelIO, LoadReportsMissingFiles) {
  const std::string path = "/nonexistent/dir/model.safetensors";
  try {
    load(path);
    ADD_FAILURE() << "loaded a missing file";
  } catch (const FileNotFound& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
  }
  // FileNotFound is a std::runtime_error (callers catching that keep working); an existing
  // path that is not a regular file is a plain runtime_error, not FileNotFound.
  EXPECT_THROW(load(path), std::runtime_error);
  const fs::path dir = temp_dir("notfound");
  try {
    load(dir.string());
    ADD_FAILURE() << "loaded a directory";
  } catch (const FileNotFound& e) {
    ADD_FAILURE() << "a directory reported as missing: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Files that are not kancore model files at all: "<path>: not a kancore model file (<reason>)",
// a NotAModelFile (a std::invalid_argument), whatever the bytes.
TEST(ModelIO, ForeignFilesAreReportedAsSuch) {
  const fs::path dir = temp_dir("foreign");
  std::string random(4096, '\0');
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (auto& c : random) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    c = static_cast<char>(state >> 56);
  }
  // A torch.save-like pickle (protocol 2 opcodes, then a zip-ish tail), a text file, random
  // bytes, an empty file, a JSON file, and safetensors files that are not kancore's.
  static const char kPickle[] =
      "\x80\x02\x8a\x0al\xfc\x9c" "F\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\x00\x00"
      "protocol_versionq\x01M\xe9\x03u.";
  const std::string pickle = std::string(kPickle, sizeof(kPickle) - 1) + random.substr(0, 200);
  const std::string tensor_only = "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}";
  const std::string other_meta =
      "{\"__metadata__\": {\"format\": \"pt\"}, \"w\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"pickle", pickle},
      {"text", "hello, this is a text file and not a model\n"},
      {"random", random},
      {"empty", ""},
      {"seven", "1234567"},
      {"json", "{\"dtype\": \"float32\"}\n"},
      {"short length, no brace", join("[1, 2, 3]", "")},
      {"safetensors without metadata", join(tensor_only, std::string(4, '\0'))},
      {"safetensors of another program", join(other_meta, std::string(4, '\0'))},
  };
  for (const auto& [name, bytes] : cases) {
    const fs::path file = dir / "foreign.bin";
    { std::ofstream(file, std::ios::binary) << bytes; }
    try {
      load(file.string());
      ADD_FAILURE() << name << ": accepted";
    } catch (const NotAModelFile& e) {
      const std::string what = e.what();
      const std::string prefix = file.string() + ": not a kancore model file (";
      EXPECT_EQ(what.rfind(prefix, 0), 0u) << name << ": " << what;
      EXPECT_EQ(what.back(), ')') << name << ": " << what;
      EXPECT_FALSE(e.reason().empty()) << name;
      EXPECT_NE(what.find(e.reason()), std::string::npos) << name << ": " << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": not reported as foreign: " << e.what();
    }
    // In memory: the same classification, "kancore: not a kancore model file (...)".
    try {
      deserialize(bytes.data(), bytes.size());
      ADD_FAILURE() << name << ": accepted in memory";
    } catch (const NotAModelFile& e) {
      EXPECT_EQ(std::string(e.what()).rfind("kancore: not a kancore model file (", 0), 0u) << e.what();
    }
  }
  // The pickle's reason keeps the specific cause (its first 8 bytes as a header length).
  try {
    deserialize(pickle.data(), pickle.size());
  } catch (const NotAModelFile& e) {
    EXPECT_NE(e.reason().find("header length"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Kancore files that are corrupt keep their precise messages: they are not "foreign".
TEST(ModelIO, CorruptKancoreFilesAreNotForeign) {
  const std::string f = serialize(Network(small_config(DType::float32, true), 2));
  const auto [h, d] = split(f);
  auto expect_corrupt = [](const std::string& bytes, const std::string& needle) {
    try {
      deserialize(bytes.data(), bytes.size());
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const NotAModelFile& e) {
      ADD_FAILURE() << "reported as foreign: " << e.what();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("kancore: model file: ", 0), 0u) << e.what();
    }
  };
  expect_corrupt(f.substr(0, f.size() - 1), "outside the data section");  // a data byte short
  expect_corrupt(f.substr(0, 8 + h.size() / 2), "truncated");     // cut inside the header
  expect_corrupt(f.substr(0, 9), "truncated");                     // only the '{' left
  expect_corrupt(f.substr(0, 8), "truncated");                     // only the length left
  expect_corrupt(with_header_edit(f, "\"format_version\": \"1\"", "\"format_version\": \"3\""),
                 "format_version");
  expect_corrupt(with_header_edit(f, "\"dtype\": \"F32\", \"shape\": [2, 4, 3]", "\"dtype\": \"F16\", \"shape\": [2, 4, 3]"),
                 "expected dtype F32 or F64");
  expect_corrupt(join(h.substr(0, h.size() - 2) + "x}", d), "header");  // bad JSON at the end
}

TEST(ModelIO, SavesUnderLongNames) {
  Network net(small_config(DType::float32, false), 4);
  const fs::path dir = temp_dir("names");
  // 240 characters: a temporary name derived from it would pass NAME_MAX (255).
  const std::string path = (dir / (std::string(230, 'm') + ".safetensors")).string();
  kancore::save(net, path);
  Network back = kancore::load(path);
  EXPECT_TRUE(same_tensors(back, net));
  std::size_t left = 0;  // no temporary file stays behind
  for (const auto& e : fs::directory_iterator(dir)) left += e.path().filename().string().rfind(".kancore-", 0) == 0;
  EXPECT_EQ(left, 0u);
}

TEST(ModelIO, RefusesPathsWithNul) {
  Network net(small_config(DType::float32, false), 4);
  const fs::path dir = temp_dir("nul");
  const std::string good = (dir / "m.safetensors").string();
  const std::string bad = good + std::string("\0.txt", 5);
  EXPECT_THROW(kancore::save(net, bad), std::invalid_argument);
  EXPECT_FALSE(fs::exists(good));
  kancore::save(net, good);
  EXPECT_THROW(kancore::load(bad), std::invalid_argument);
}

TEST(ModelIO, RejectsEveryTruncation) {
  Network net(small_config(DType::float32, true), 2);
  const std::string file = serialize(net);
  for (std::size_t n = 0; n < file.size(); ++n) expect_rejected(file.substr(0, n), "truncated to " + std::to_string(n));
  // Trailing bytes after the last tensor are rejected too (the tensors must cover the data).
  expect_rejected(file + std::string(4, '\0'), "trailing bytes");
}

TEST(ModelIO, RejectsBadHeaderLengths) {
  const std::string file = serialize(Network(small_config(DType::float32, false), 2));
  auto with_len = [&](std::uint64_t n) {
    std::string f = file;
    for (int b = 0; b < 8; ++b) f[b] = static_cast<char>((n >> (8 * b)) & 0xFF);
    return f;
  };
  expect_rejected(with_len(0), "header length 0");
  expect_rejected(with_len(~std::uint64_t{0}), "header length 2^64-1");
  expect_rejected(with_len(std::uint64_t{1} << 63), "header length 2^63");
  expect_rejected(with_len(file.size()), "header length past the end");
  expect_rejected(with_len(std::uint64_t{32} << 20), "header length over the limit");
  expect_rejected(with_len(split(file).first.size() - 1), "header length one short");
  expect_rejected(with_len(split(file).first.size() + 1), "header length one long");
}

TEST(ModelIO, RejectsBadOffsetsDtypesAndShapes) {
  const std::string f = serialize(Network(small_config(DType::float32, false), 2));
  // layers.0.kan_weight is [0, 96]; layers.1.grid follows at [96, 156].
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [4, 100]"), "overlap");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [96, 156]", "\"data_offsets\": [92, 152]"), "overlap 2");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [0, 9600000]"), "end out of range");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [96, 0]"), "begin > end");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [0, 96, 1]"), "three offsets");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [0, -96]"), "negative");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [0, 96.0]"), "fraction");
  expect_rejected(with_header_edit(f, "\"data_offsets\": [0, 96]", "\"data_offsets\": [0, 18446744073709551616]"), "2^64");
  expect_rejected(with_header_edit(f, "\"dtype\": \"F32\", \"shape\": [2, 4, 3]", "\"dtype\": \"F64\", \"shape\": [2, 4, 3]"), "dtype vs bytes");
  expect_rejected(with_header_edit(f, "\"dtype\": \"F32\", \"shape\": [2, 4, 3]", "\"dtype\": \"F16\", \"shape\": [2, 4, 3]"), "F16");
  expect_rejected(with_header_edit(f, "\"dtype\": \"F32\", \"shape\": [2, 4, 3]", "\"dtype\": \"F32\", \"shape\": [4, 2, 3]"), "transposed shape");
  expect_rejected(with_header_edit(f, "\"dtype\": \"F32\", \"shape\": [2, 4, 3]", "\"dtype\": \"F32\", \"shape\": [24]"), "flat shape");
  expect_rejected(with_header_edit(f, "\"shape\": [2, 4, 3]", "\"shape\": [4294967296, 4294967296, 4294967296]"), "overflowing shape");
  expect_rejected(with_header_edit(f, "\"shape\": [2, 4, 3]", "\"shape\": [1099511627776, 0, 3]"), "huge zero-size shape");
  expect_rejected(with_header_edit(f, "\"shape\": [2, 4, 3]", "\"shape\": [1,1,1,1,1,1,1,1,24]"), "rank 9");
  expect_rejected(with_header_edit(f, "\"layers.0.kan_weight\"", "\"layers.0.kan_weights\""), "renamed tensor");
  expect_rejected(with_header_edit(f, "\"layers.0.kan_weight\": {", "\"x\": {}, \"layers.0.kan_weight\": {"), "empty extra entry");
}

TEST(ModelIO, RejectsBadConfigs) {
  const std::string f = serialize(Network(small_config(DType::float32, false), 2));
  expect_rejected(with_header_edit(f, "\\\"kind\\\": \\\"c0\\\"", "\\\"kind\\\": \\\"relu\\\""), "unknown kind");
  expect_rejected(with_header_edit(f, "\"format_version\": \"1\"", "\"format_version\": \"3\""), "version 3");
  expect_rejected(with_header_edit(f, "\"format\": \"kancore.network\"", "\"format\": \"other\""), "format");
  expect_rejected(with_header_edit(f, "\\\"dtype\\\": \\\"float32\\\"", "\\\"dtype\\\": \\\"float64\\\""), "config dtype vs tensors");
  expect_rejected(with_header_edit(f, "\\\"dtype\\\": \\\"float32\\\"", "\\\"dtype\\\": \\\"int8\\\""), "config dtype");
  expect_rejected(with_header_edit(f, "\\\"num_control_points\\\": 4", "\\\"num_control_points\\\": 1"), "K = 1");
  expect_rejected(with_header_edit(f, "\\\"num_control_points\\\": 4", "\\\"num_control_points\\\": 5"), "K vs tensor");
  expect_rejected(with_header_edit(f, "\\\"out_features\\\": 3", "\\\"out_features\\\": 4"), "chain");
  expect_rejected(with_header_edit(f, "\\\"spline_width\\\": 3", "\\\"spline_width\\\": -3"), "negative width");
  expect_rejected(with_header_edit(f, "\\\"spline_width\\\": 3", "\\\"spline_width\\\": 1e999"), "infinite width");
  expect_rejected(with_header_edit(f, "\\\"fitted_domain\\\": false", "\\\"fitted_domain\\\": true"), "fitted without tensors");
  expect_rejected(with_header_edit(f, "\\\"layernorm\\\": false", "\\\"layernorm\\\": true"), "layernorm without tensors");
  expect_rejected(with_header_edit(f, "\\\"layers\\\": [", "\\\"layers\\\": [[], "), "layer not an object");
  expect_rejected(with_header_edit(f, "\\\"spline_order\\\": 1", "\\\"spline_order\\\": 0"), "order 0");
  expect_rejected(with_header_edit(f, "\\\"grid_size\\\": 2", "\\\"grid_size\\\": 99999999999999999999"), "huge grid");
  expect_rejected(with_header_edit(f, "\"config\": \"{", "\"config\": \"{{"), "config JSON");
  expect_rejected(with_header_edit(f, "\"config\": \"", "\"config\": 5, \"c\": \""), "config not a string");
  expect_rejected(with_header_edit(f, "\"__metadata__\"", "\"__meta__\""), "no metadata");
  // Extra keys are ignored, as the spec says.
  const std::string extra = with_header_edit(f, "\\\"kind\\\": \\\"c0\\\"", "\\\"variant\\\": \\\"B-spline\\\", \\\"kind\\\": \\\"c0\\\"");
  EXPECT_NO_THROW(deserialize(extra.data(), extra.size()));
}

TEST(ModelIO, RejectsBadJson) {
  const std::string f = serialize(Network(small_config(DType::float32, false), 2));
  const auto [h, d] = split(f);
  expect_rejected(join(h.substr(0, h.size() / 2), d), "half a header");
  expect_rejected(join(h + "x", d), "trailing garbage");
  expect_rejected(join("[" + h + "]", d), "array at the top");
  expect_rejected(join(std::string(5000, '[') + std::string(5000, ']'), d), "deep nesting");
  expect_rejected(join("{\"a\": " + std::string(100, '{') + std::string(100, '}') + "}", d), "deep object");
  expect_rejected(with_header_edit(f, "\"layers.0.kan_weight\": {", "\"layers.1.grid\": {"), "duplicate key");
  expect_rejected(join(std::string("{\"\xff\": 1}"), ""), "no metadata, odd bytes");
  expect_rejected(join("{\"a\\u12\": 1}", ""), "short escape");
  expect_rejected(join("{\"a\\ud800\": 1}", ""), "lone surrogate");
  expect_rejected(join(std::string("{\"a\0\": 1}", 9), ""), "NUL in a string");
  expect_rejected(join("", ""), "empty header");
}

// What the Python loader (python/kancore/model_io.py) refuses, this one refuses too; the shared
// corpus is tests/python/test_loader_conformance.py.
TEST(ModelIO, AgreesWithThePythonLoader) {
  Network net(small_config(DType::float32, false), 2);
  std::vector<float> x{0.3f, -0.7f, 1.9f, 0.2f, -2.5f, 0.0f};
  net.update_grids(3, x.data());  // the C0 layer gets a fitted domain (input_scale/offset)
  const std::string f = serialize(net);
  EXPECT_NO_THROW(deserialize(f.data(), f.size()));
  expect_rejected(with_header_edit(f, "\"format\": ", "\"note\": \"\xff\xfe\", \"format\": "),
                  "invalid UTF-8 in a metadata value");
  expect_rejected(with_header_edit(f, "\"format\": ", "\"note\": \"\xc0\xaf\", \"format\": "),
                  "overlong UTF-8");
  expect_rejected(with_header_edit(f, "\"format\": ", "\"note\": \"\xed\xa0\x80\", \"format\": "),
                  "an encoded surrogate");
  EXPECT_NO_THROW({
    const std::string ok = with_header_edit(f, "\"format\": ", "\"note\": \"\xc3\xa9\xe2\x82\xac\", \"format\": ");
    deserialize(ok.data(), ok.size());
  }) << "well-formed UTF-8 must still load";
  expect_rejected(with_header_edit(f, "\"layers.0.input_scale\": {\"dtype\": \"F32\", ",
                                   "\"layers.0.input_scale\": {\"note\": 1, \"dtype\": \"F32\", "),
                  "an extra key in a tensor entry");
  auto scale = net.tensor("layers.0.input_scale");
  static_cast<float*>(scale.data)[1] = std::numeric_limits<float>::infinity();
  const std::string inf_scale = serialize(net);
  expect_rejected(inf_scale, "inf input_scale");
}

TEST(ModelIO, RejectsBadKnots) {
  Network net(small_config(DType::float64, false), 2);
  auto g = net.tensor("layers.1.grid");
  static_cast<double*>(g.data)[2] = -10.0;  // decreasing
  const std::string f1 = serialize(net);
  expect_rejected(f1, "decreasing knots");
  static_cast<double*>(g.data)[2] = std::numeric_limits<double>::quiet_NaN();
  const std::string f2 = serialize(net);
  expect_rejected(f2, "NaN knot");
  // save() refuses such a network before touching the file it would replace.
  const fs::path dir = temp_dir("badsave");
  const std::string path = (dir / "m.safetensors").string();
  { std::ofstream(path) << "previous"; }
  EXPECT_THROW(kancore::save(net, path), std::invalid_argument);
  std::ifstream in(path);
  std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept, "previous");
}

}  // namespace
