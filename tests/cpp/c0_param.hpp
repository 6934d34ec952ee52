// Parameterisation shared by the C0 test files: every (element type, impl) pair.
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "c0_reference.hpp"

namespace kctest {

struct DtypeImpl {
  DType dtype;
  Impl impl;
  std::string name() const {
    return std::string(dtype == DType::float32 ? "float" : "double") + "_" + impl_label(impl);
  }
  // Readable test names in ctest ("# GetParam() = float_gather").
  friend void PrintTo(const DtypeImpl& p, std::ostream* os) { *os << p.name(); }
};

inline std::string dtype_impl_name(const ::testing::TestParamInfo<DtypeImpl>& info) {
  return info.param.name();
}

class DtypeImplTest : public ::testing::TestWithParam<DtypeImpl> {
 protected:
  DType dtype() const { return GetParam().dtype; }
  Impl impl() const { return GetParam().impl; }
  // Calls fn(T{}) with T = float or double.
  template <class Fn>
  void with_type(Fn&& fn) const {
    if (dtype() == DType::float32) {
      fn(float{});
    } else {
      fn(double{});
    }
  }
};

#define KCTEST_INSTANTIATE_DTYPE_IMPL(suite)                                                  \
  INSTANTIATE_TEST_SUITE_P(                                                                   \
      All, suite,                                                                             \
      ::testing::Values(kctest::DtypeImpl{kctest::DType::float32, kctest::Impl::gather},      \
                        kctest::DtypeImpl{kctest::DType::float32, kctest::Impl::csr},         \
                        kctest::DtypeImpl{kctest::DType::float64, kctest::Impl::gather},      \
                        kctest::DtypeImpl{kctest::DType::float64, kctest::Impl::csr}),        \
      kctest::dtype_impl_name)

}  // namespace kctest
