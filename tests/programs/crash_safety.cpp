// Crash safety of train's checkpoints, on the real program (Tiny preset, Fashion-MNIST, a checkpoint
// after every step):
//   1. a reference run goes from start to end uninterrupted;
//   2. the same run is killed with SIGKILL kKills times, every restart resuming from the checkpoint
//      the last one left: half of the kills land during a save (just after its temporary file
//      appears, seen through inotify, after a random 0-400 µs), half at a random moment. Every
//      checkpoint left on disk must load (the next resume reads it; a resume that fails fails the
//      test), and after the last kill the run finishes: its final checkpoint and weights must equal
//      the reference's byte for byte, so every resume went on exactly as the uninterrupted run did;
//   3. a save that hits a file size limit (RLIMIT_FSIZE, as a full disk: the write fails) exits
//      non-zero with one line that names the problem and says the previous checkpoint is intact,
//      and that checkpoint is byte for byte the one before, with no temporary file left.
// Usage: crash_safety TRAIN FASHION_DIR. Exit 77 (skipped) without Fashion-MNIST.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int kKills = 50;
constexpr const char* kCheckpointTemp = "checkpoint.safetensors.tmp-";  // io/atomic_file.hpp's temporary

std::string g_train, g_fashion;
fs::path g_dir;

[[noreturn]] void fail(const std::string& what, const fs::path& log = {}) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    if (!log.empty()) {
        std::ifstream in(log);
        std::vector<std::string> lines;
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        for (std::size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i)
            std::fprintf(stderr, "  %s\n", lines[i].c_str());
    }
    std::exit(1);
}

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return {};
    return {std::istreambuf_iterator<char>(in), {}};
}

/// train's flags for a run into `out` (resuming from its checkpoint when there is one).
std::vector<std::string> train_args(const fs::path& out, long long steps) {
    std::vector<std::string> a{g_train,
                               "--preset",
                               "tiny",
                               "--vae-steps",
                               "12",
                               "--steps",
                               std::to_string(steps),
                               "--checkpoint-every",
                               "1",
                               "--sample-every",
                               "0",
                               "--sample-steps",
                               "2",
                               "--log-every",
                               "1000",
                               "--threads",
                               "1",
                               "--seed",
                               "5",
                               "--fashion-dir",
                               g_fashion,
                               "--out-dir",
                               out.string()};
    if (fs::exists(out / "checkpoint.safetensors")) {
        a.push_back("--resume");
        a.push_back((out / "checkpoint.safetensors").string());
    }
    return a;
}

/// Starts train with its output appended to `log`; `file_limit` > 0 sets RLIMIT_FSIZE (bytes).
pid_t start(const std::vector<std::string>& args, const fs::path& log, rlim_t file_limit = 0) {
    const pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        if (file_limit > 0) {
            const rlimit r{file_limit, file_limit};
            setrlimit(RLIMIT_FSIZE, &r);
        }
        std::vector<char*> argv;
        for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

int wait_for(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) fail("waitpid");
    return status;
}

std::vector<fs::path> temp_files(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().starts_with(kCheckpointTemp)) out.push_back(e.path());
    return out;
}

/// Waits until `pid` creates its `skip`+1-th temporary file in the watched directory: true; or
/// until it ends: false, with its wait status in `status`.
bool wait_for_save(int inotify, pid_t pid, int skip, int& status) {
    alignas(inotify_event) char buf[4096];
    for (;;) {
        pollfd p{inotify, POLLIN, 0};
        if (::poll(&p, 1, 50) == 0) {
            if (waitpid(pid, &status, WNOHANG) == pid) return false;  // ended without another save
            continue;
        }
        const ssize_t n = ::read(inotify, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
            const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
            if (e->len > 0 && std::string(e->name).starts_with(kCheckpointTemp) && skip-- == 0) return true;
            off += ssize_t(sizeof(inotify_event) + e->len);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: crash_safety TRAIN FASHION_DIR\n");
        return 2;
    }
    g_train = argv[1];
    g_fashion = argv[2];
    if (!fs::exists(g_fashion + "/train-images-idx3-ubyte.gz") && !fs::exists(g_fashion + "/train-images-idx3-ubyte")) {
        std::printf("Fashion-MNIST not found in %s: skipped\n", g_fashion.c_str());
        return 77;
    }
    char tmpl[] = "/tmp/diffuse_crash_XXXXXX";
    if (!mkdtemp(tmpl)) fail("mkdtemp");
    g_dir = tmpl;
    constexpr long long kSteps = 24;

    // 1. The uninterrupted run.
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path ref = g_dir / "ref";
    fs::create_directories(ref);
    if (const int st = wait_for(start(train_args(ref, kSteps), ref / "log")); !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the reference run failed", ref / "log");
    const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string ref_checkpoint = read_all(ref / "checkpoint.safetensors");
    const std::string ref_weights = read_all(ref / "diffusion.safetensors");
    if (ref_checkpoint.empty() || ref_weights.empty()) fail("the reference run left no checkpoint or weights");

    // 2. The same run, killed kKills times.
    const fs::path run = g_dir / "run";
    fs::create_directories(run);
    const int inotify = inotify_init1(IN_CLOEXEC);
    if (inotify < 0 || inotify_add_watch(inotify, run.c_str(), IN_CREATE) < 0) fail("inotify");
    std::mt19937_64 rng(12345);
    int during_save = 0, resumed = 0, finished = 0;
    for (int k = 0; k < kKills; ++k) {
        const bool had_checkpoint = fs::exists(run / "checkpoint.safetensors");
        const fs::path log = run / ("log." + std::to_string(k));
        const pid_t pid = start(train_args(run, kSteps), log);
        int st = 0;
        bool reaped = false;
        if (k % 2 == 0) {
            if (wait_for_save(inotify, pid, int(rng() % 3), st)) {
                std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
                kill(pid, SIGKILL);
            } else reaped = true;
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % std::uint64_t(0.6 * run_seconds * 1e6)));
            kill(pid, SIGKILL);
        }
        if (!reaped) st = wait_for(pid);
        if (WIFEXITED(st)) {  // it finished (or failed) before the kill
            if (WEXITSTATUS(st) != 0)
                fail("run " + std::to_string(k) + " exited with " + std::to_string(WEXITSTATUS(st)), log);
            if (read_all(run / "checkpoint.safetensors") != ref_checkpoint)
                fail("a run that finished between kills ended on another checkpoint than the reference's");
            ++finished;
            fs::remove_all(run);  // start over: the kills go on
            fs::create_directories(run);
            inotify_add_watch(inotify, run.c_str(), IN_CREATE);
            continue;
        }
        const std::string text = read_all(log);
        if (had_checkpoint && text.find("resumed from") != std::string::npos) ++resumed;
        if (text.find("train:") != std::string::npos) fail("run " + std::to_string(k) + " reported an error", log);
        const auto temps = temp_files(run);
        if (!temps.empty()) ++during_save;  // killed between creating the temporary file and the rename
        for (const auto& t : temps) fs::remove(t);
        // Drain events of this run.
        for (pollfd p{inotify, POLLIN, 0}; ::poll(&p, 1, 0) > 0;) {
            char buf[4096];
            if (::read(inotify, buf, sizeof buf) <= 0) break;
        }
    }

    // The last restart runs to the end: everything must be as in the uninterrupted run.
    const fs::path last_log = run / "log.final";
    if (const int st = wait_for(start(train_args(run, kSteps), last_log)); !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the run after the last kill failed", last_log);
    if (read_all(run / "checkpoint.safetensors") != ref_checkpoint)
        fail("after " + std::to_string(kKills) + " kills the final checkpoint differs from the uninterrupted run's");
    if (read_all(run / "diffusion.safetensors") != ref_weights)
        fail("after " + std::to_string(kKills) + " kills the final weights differ from the uninterrupted run's");
    std::printf(
        "%d SIGKILLs (%d with a save's temporary file on disk, %d after a successful resume, %d runs finished "
        "between kills): final checkpoint and weights bitwise equal to the uninterrupted run's\n",
        kKills, during_save, resumed, finished);
    if (during_save < kKills / 4) fail("too few kills landed during a save: " + std::to_string(during_save));

    // 3. A save that cannot be written (a file size limit: the write fails as on a full disk).
    const fs::path full = g_dir / "full";
    fs::create_directories(full);
    if (const int st = wait_for(start(train_args(full, 2), full / "log")); !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the run before the full disk failed", full / "log");
    const std::string before = read_all(full / "checkpoint.safetensors");
    const fs::path log = full / "log.full";
    const int st = wait_for(start(train_args(full, 4), log, rlim_t(before.size() / 2)));
    const std::string text = read_all(log);
    if (!WIFEXITED(st) || WEXITSTATUS(st) == 0) fail("a save over the file size limit did not fail cleanly", log);
    const std::size_t line = text.find("train: ");
    if (line == std::string::npos) fail("no error line", log);
    const std::string message = text.substr(line, text.find('\n', line) - line);
    if (message.find("File too large") == std::string::npos || message.find("is intact") == std::string::npos ||
        message.find("diffusion step 2") == std::string::npos)
        fail("the error line does not name the problem and the intact checkpoint: " + message);
    if (read_all(full / "checkpoint.safetensors") != before) fail("the failed save changed the previous checkpoint");
    if (!temp_files(full).empty()) fail("the failed save left its temporary file");
    std::printf("a save over the file size limit: exit %d, \"%s\"; the previous checkpoint is unchanged\n",
                WEXITSTATUS(st), message.c_str());
    fs::remove_all(g_dir);
    return 0;
}
