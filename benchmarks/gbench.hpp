// Google Benchmark (Debian's libbenchmark-dev) as bench_layers, bench_adam and bench_train_step use
// it: this project's defaults in front of the user's flags, so a flag given on the command line wins
// (it comes later). The defaults: 9 repetitions in random interleaved order (load from other
// processes on a shared machine hits every case alike), aggregates only (median, mean, stddev, cv),
// counters as columns, 20 ms per sample. Any --benchmark_* flag works as usual, e.g.
//   --benchmark_filter=Conv --benchmark_repetitions=21 --benchmark_out=r.json --benchmark_out_format=json
#ifndef DIFFUSE_BENCHMARKS_GBENCH_HPP
#define DIFFUSE_BENCHMARKS_GBENCH_HPP

#include <benchmark/benchmark.h>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

namespace diffuse::bench {

/// Initializes Google Benchmark with our defaults and the user's flags; returns the arguments that
/// are not flags (a benchmark's own positional arguments). An unknown flag exits with status 2.
inline std::vector<std::string> init_benchmark(int argc, char** argv,
                                               std::initializer_list<const char*> extra_defaults = {}) {
    static const char* const kDefaults[] = {"--benchmark_repetitions=9", "--benchmark_enable_random_interleaving=true",
                                            "--benchmark_report_aggregates_only=true",
                                            "--benchmark_counters_tabular=true", "--benchmark_min_time=0.02"};
    std::vector<char*> args{argv[0]};
    for (const char* d : kDefaults) args.push_back(const_cast<char*>(d));
    for (const char* d : extra_defaults) args.push_back(const_cast<char*>(d));
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    int n = int(args.size());
    benchmark::Initialize(&n, args.data());
    std::vector<std::string> rest(args.begin() + 1, args.begin() + n);
    for (const std::string& a : rest)
        if (a.rfind("--", 0) == 0) {
            std::fprintf(stderr, "%s: unknown flag %s (see --help)\n", argv[0], a.c_str());
            std::exit(2);
        }
    return rest;
}

/// A rate counter: `amount` (FLOPs, bytes, images) per iteration, reported per second with SI
/// prefixes (G = 10^9): FLOP/s, B/s, images/s. Register with ->UseRealTime(): the work runs on
/// OpenMP threads, so the main thread's CPU time is no measure of it.
inline benchmark::Counter per_second(double amount) {
    return benchmark::Counter(amount, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace diffuse::bench

#endif
