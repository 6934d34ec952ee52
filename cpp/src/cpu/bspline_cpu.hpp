// CPU kernels of the B-spline layer (internal). Typed pointers to dense row-major data; the
// dispatcher (bspline_dispatch.cpp) has validated everything.
#pragma once

#include <cstddef>

#include "kancore/bspline_layer.hpp"

namespace kancore::bspline::cpu {

// Workspace, in elements of the dtype.
std::size_t forward_workspace_elems(const Shape& s);
std::size_t backward_workspace_elems(const Shape& s);

// Wb (base weight) and scaler may be null.
template <class T>
void forward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
             const T* scaler, T* y, T* ws);

// Null gradient pointers are skipped.
template <class T>
void backward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
              const T* scaler, const T* grad_y, T* gx, T* gWb, T* gW, T* gscaler, T* ws);

}  // namespace kancore::bspline::cpu
