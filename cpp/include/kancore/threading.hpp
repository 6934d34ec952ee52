// How many threads kancore's CPU kernels use. CUDA-free.
//
// The count is kancore's own: it does not follow torch.set_num_threads (or omp_set_num_threads
// called elsewhere). The default is the first value of OMP_NUM_THREADS when that is a positive
// integer, else the number of processors this process may run on (omp_get_num_procs), read once
// when first needed. Whatever the count, a parallel region gets one thread per 2^20
// multiply-adds of work at most, so small layers and batches run on one thread (README
// "Threads"): waking a thread costs more than small work gains, most of all on a busy machine.
// Results are bitwise identical for every count.
#pragma once

namespace kancore {

// Sets the largest number of threads a CPU kernel uses, for every thread of the process.
// Throws std::invalid_argument when n < 1.
void set_num_threads(int n);

// The largest number of threads a CPU kernel uses (the default until set_num_threads is called).
int get_num_threads() noexcept;

}  // namespace kancore
