// OpenMP helpers with a static schedule: the same thread count always splits work the same way,
// and reductions are combined in a fixed order, so results are bitwise reproducible.
#ifndef DIFFUSE_CORE_PARALLEL_HPP
#define DIFFUSE_CORE_PARALLEL_HPP

#include <omp.h>

namespace diffuse {

/// f(i) for i in [0, n), split statically across threads. Runs inline when already inside a
/// parallel region (no nesting).
template <class F>
inline void parallel_for(int n, F f) {
    if (n <= 1 || omp_in_parallel()) {
        for (int i = 0; i < n; ++i) f(i);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) f(i);
}

inline int num_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

}  // namespace diffuse

#endif
