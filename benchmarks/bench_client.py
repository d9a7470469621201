"""The client of bench_compare's stdin protocol (benchmarks/bench_compare.cpp): one command line in,
one line out. Shared by compare_torch.py and compare_builds.py."""
import subprocess


class BenchCompare:
    """One bench_compare process. `die(message)` reports a failure and does not return."""

    def __init__(self, binary, threads, model, die, cwd=None):
        self.binary, self.die = binary, die
        self.p = subprocess.Popen([binary, "--threads", str(threads), "--model", model], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, encoding="utf-8", cwd=cwd)

    def ask(self, *fields):
        self.p.stdin.write("\t".join(str(f) for f in fields) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().rstrip("\n")
        if line.startswith("ok"):
            return line[3:]
        self.die(f"{self.binary}, '{fields[0]} {' '.join(str(f) for f in fields[1:2])}': "
                 + (line[6:] if line.startswith("error") else f"exited ({self.p.poll()})"))

    def run(self, k):
        """Seconds per call of the case, then of each auxiliary timer, over k calls."""
        return [float(v) for v in self.ask("run", k).split()]

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
        self.p.wait()
