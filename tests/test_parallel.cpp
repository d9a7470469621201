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

TEST_CASE("parallel_shares_then: shares cover the range once, then every task sees all of them") {
    const int before = omp_get_max_threads();
    for (int threads : {1, 2, 3})
        for (bool split : {true, false}) {
            omp_set_num_threads(threads);
            constexpr int n = 7, tasks = 5;
            std::vector<int> covered(n, 0), task_ran(tasks, 0);
            std::vector<long> task_saw(tasks, -1);
            parallel_shares_then(
                n,
                [&](int b, int e) {
                    for (int i = b; i < e; ++i) covered[std::size_t(i)] += 1;
                },
                tasks,
                [&](int j) {
                    long s = 0;
                    for (int c : covered) s += c;
                    task_saw[std::size_t(j)] = s;
                    task_ran[std::size_t(j)] += 1;
                },
                split);
            INFO(threads, " threads, split ", split);
            CHECK(covered == std::vector<int>(n, 1));
            CHECK(task_ran == std::vector<int>(tasks, 1));
            CHECK(task_saw == std::vector<long>(tasks, n));
        }
    omp_set_num_threads(before);
}
