// core/parallel.hpp: parallel_two_phases runs its second phase after every thread's first, in one
// region, and inline on one thread.
#include <doctest/doctest.h>

#include <omp.h>

#include <atomic>
#include <vector>

#include "diffuse/core/parallel.hpp"

using namespace diffuse;

namespace {

/// Each thread writes its slot in the first phase, slowly for thread 0; in the second every thread sums
/// all the slots. Returns what each thread summed (-1 where a thread did not run the second phase).
std::vector<long> sums_seen(int threads, int& team) {
    omp_set_num_threads(threads);
    std::vector<long> slots(16, 0), seen(16, -1);
    std::atomic<int> size{0};
    parallel_two_phases(
        [&](int t, int n) {
            size = n;
            if (t == 0) {  // the last to finish, so that a missing barrier would show
                volatile long spin = 0;
                for (long i = 0; i < 20'000'000; ++i) spin = spin + 1;
            }
            slots[std::size_t(t)] = t + 1;
        },
        [&](int t, int n) {
            long s = 0;
            for (int i = 0; i < n; ++i) s += slots[std::size_t(i)];
            seen[std::size_t(t)] = s;
        });
    team = size;
    seen.resize(std::size_t(team));
    return seen;
}

}  // namespace

TEST_CASE("parallel_two_phases: every thread's second phase sees every thread's first") {
    const int before = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
        int team = 0;
        const std::vector<long> seen = sums_seen(threads, team);
        INFO(threads, " threads, a team of ", team);
        CHECK(team == threads);
        for (long s : seen) CHECK(s == long(team) * (team + 1) / 2);
    }
    omp_set_num_threads(before);
}

TEST_CASE("parallel_two_phases: inside a parallel region it runs inline, as thread 0 of 1") {
    omp_set_num_threads(2);
    std::vector<int> calls(2, 0);
#pragma omp parallel num_threads(2)
    {
        int first = -1, then = -1;
        parallel_two_phases([&](int t, int n) { first = t * 10 + n; }, [&](int t, int n) { then = t * 10 + n; });
        calls[std::size_t(omp_get_thread_num())] = first == 1 && then == 1;
    }
    CHECK(calls == std::vector<int>{1, 1});
}
