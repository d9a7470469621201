// Tests of Tiny models include this: one OpenMP thread from the start of the program. Tiny models
// gain nothing from threads, and spinning worker threads crawl on a busy, shared machine (two made
// test_programs' Tiny pipeline test 20x slower on a busy 2-core machine: 22 s against 1 s).
#ifndef DIFFUSE_TESTS_ONE_THREAD_HPP
#define DIFFUSE_TESTS_ONE_THREAD_HPP

#include <omp.h>

namespace diffuse::test {
inline const int one_thread_from_start = [] {
    omp_set_num_threads(1);
    return 1;
}();
}  // namespace diffuse::test

#endif
