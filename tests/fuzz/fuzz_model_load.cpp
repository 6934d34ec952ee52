// libFuzzer target: the model loader must reject any malformed input with
// std::invalid_argument and never crash, read out of bounds or over-allocate (ASan/UBSan).
// A file it accepts must run forward and survive a save/load round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kancore/model_io.hpp"
#include "kancore/network.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    kancore::Network net = kancore::deserialize(data, size);
    // Exercise the accepted network: one forward row of zeros, then a byte-exact round trip.
    const std::size_t in = static_cast<std::size_t>(net.in_features());
    const std::size_t out = static_cast<std::size_t>(net.out_features());
    if (net.dtype() == kancore::DType::float64) {
      std::vector<double> x(in, 0.0), y(out);
      net.forward(1, x.data(), y.data());
    } else {
      std::vector<float> x(in, 0.0f), y(out);
      net.forward(1, x.data(), y.data());
    }
    const std::string again = kancore::serialize(net);
    kancore::Network back = kancore::deserialize(again.data(), again.size());
    if (kancore::serialize(back) != again) std::abort();  // a round trip must be exact
  } catch (const std::invalid_argument&) {
    // expected for malformed files
  }
  return 0;
}
