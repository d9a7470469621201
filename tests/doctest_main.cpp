#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "test_skip.hpp"

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int failed = context.run();
    if (context.shouldExit() || failed) return failed;
    return diffuse::test::skipped() ? diffuse::test::kSkipExitCode : 0;
}
