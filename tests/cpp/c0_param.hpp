// Parameterisation shared by the C0 test files: every (element type, impl) pair.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "c0_reference.hpp"

namespace kctest {

using DtypeImpl = std::tuple<DType, Impl>;

inline std::string dtype_impl_name(const ::testing::TestParamInfo<DtypeImpl>& info) {
  const DType dt = std::get<0>(info.param);
  return std::string(dt == DType::float32 ? "float" : "double") + "_" +
         impl_label(std::get<1>(info.param));
}

class DtypeImplTest : public ::testing::TestWithParam<DtypeImpl> {
 protected:
  DType dtype() const { return std::get<0>(GetParam()); }
  Impl impl() const { return std::get<1>(GetParam()); }
  // Calls fn.template operator()<T>() with T = float or double.
  template <class Fn>
  void with_type(Fn&& fn) const {
    if (dtype() == DType::float32) {
      fn(float{});
    } else {
      fn(double{});
    }
  }
};

#define KCTEST_INSTANTIATE_DTYPE_IMPL(suite)                                                 \
  INSTANTIATE_TEST_SUITE_P(All, suite,                                                       \
                           ::testing::Combine(::testing::Values(kctest::DType::float32,      \
                                                                kctest::DType::float64),     \
                                              ::testing::Values(kctest::Impl::gather,        \
                                                                kctest::Impl::csr)),         \
                           kctest::dtype_impl_name)

}  // namespace kctest
