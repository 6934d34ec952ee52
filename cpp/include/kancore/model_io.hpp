// Saving and loading a kancore::Network in the kancore model file format: a safetensors file
// whose __metadata__ holds "format": "kancore.network", "format_version": "1" and the network's
// config as JSON. docs/model_format.md describes the layout, the tensor names and shapes per layer
// kind, the forward math and the validation rules; the Python saver/loader
// (python/kancore/model_io.py) reads and writes exactly the same files.
//
// This implementation:
// - save() writes the whole file to a temporary file in the target's directory, flushes and
//   fsyncs it, then renames it over `path`: readers see the old file or the new one, never a
//   partial one. On failure the temporary file is removed and the exception propagates.
// - load() treats the file as hostile: the header length is bounded (16 MiB) and must fit in
//   the file; the JSON is parsed with depth and element limits; every tensor's dtype, shape
//   and offsets are checked; the config must be valid and match the tensors exactly. Only then
//   is the network allocated, so no allocation exceeds what the file's bytes justify (see
//   "Validation" in docs/model_format.md). Weight values are loaded as stored (NaN included).
// - Hosts must be little-endian (checked at compile time).
//
// Errors (all derive from std::exception; the Python bindings map them as noted):
// - FileNotFound (a std::runtime_error): load() of a path that does not exist.
//   Python: FileNotFoundError.
// - NotAModelFile (a std::invalid_argument): the bytes are not a kancore model file at all (a
//   pickle, a text file, random bytes, a safetensors file of another program). what() is
//   "<path>: not a kancore model file (<reason>)" from load(), and
//   "kancore: not a kancore model file (<reason>)" from deserialize(). Python: ValueError.
//   A file counts as foreign when it is shorter than 8 bytes, its 8-byte header length exceeds
//   16 MiB or the file, its header does not start with '{', or the header carries no
//   "__metadata__" with "format": "kancore.network" (checked before anything else in it).
// - std::invalid_argument ("kancore: model file: ..."): a kancore model file that is corrupt or
//   inconsistent (truncated, bad offsets, shapes, config, knots, unknown format_version, ...).
//   Python: ValueError.
// - std::runtime_error: other I/O errors (not a regular file, no permission, write failures).
//   Python: RuntimeError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kancore/network.hpp"

namespace kancore {

// load() of a path that does not exist. path() is the path as given.
class FileNotFound : public std::runtime_error {
 public:
  explicit FileNotFound(const std::string& path)
      : std::runtime_error("kancore: cannot load " + path + ": no such file"), path_(path) {}
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

// Bytes that are not a kancore model file at all (see above). reason() is the short reason.
class NotAModelFile : public std::invalid_argument {
 public:
  NotAModelFile(const std::string& where, const std::string& reason)
      : std::invalid_argument(where + ": not a kancore model file (" + reason + ")"), reason_(reason) {}
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string reason_;
};

void save(const Network& net, const std::string& path);
Network load(const std::string& path);

// The file's bytes, in memory (what save writes; what load parses).
std::string serialize(const Network& net);
Network deserialize(const void* data, std::size_t size);

}  // namespace kancore
