// Everything public in kancore. CUDA-free: device buffers and streams pass as plain pointers.
#pragma once

#include "kancore/bspline_layer.hpp"
#include "kancore/c0_grid.hpp"
#include "kancore/c0_layer.hpp"
#include "kancore/csr.hpp"
#include "kancore/model_io.hpp"
#include "kancore/network.hpp"
#include "kancore/regularizers.hpp"
#include "kancore/threading.hpp"
#include "kancore/training.hpp"
#include "kancore/types.hpp"
#include "kancore/version.hpp"
