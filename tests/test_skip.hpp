// A test case that cannot run on this machine (a missing data set or interpreter) says why and
// marks its executable as skipped: when nothing failed, the executable exits with 77, which CTest
// reports as "Not Run (skipped)" (SKIP_RETURN_CODE in tests/CMakeLists.txt), never as a pass.
#ifndef DIFFUSE_TESTS_TEST_SKIP_HPP
#define DIFFUSE_TESTS_TEST_SKIP_HPP

#include <doctest/doctest.h>

namespace diffuse::test {
inline bool& skipped() {
    static bool any = false;
    return any;
}
inline constexpr int kSkipExitCode = 77;
}  // namespace diffuse::test

/// Ends the current test case as skipped, with the reason in the log.
#define DIFFUSE_SKIP(why)                  \
    do {                                   \
        MESSAGE("skipped: " << why);       \
        ::diffuse::test::skipped() = true; \
        return;                            \
    } while (0)

#endif
