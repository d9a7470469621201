#!/usr/bin/python3
"""diffuse beside PyTorch, case by case, on the same inputs, the same weights and the same threads.

    bash benchmarks/compare.sh [--threads N] [--rounds R] [--cases PREFIX,...] [--out FILE]
    /usr/bin/python3 benchmarks/compare_torch.py --binary build-bench/benchmarks/bench_compare [same options]

(/usr/bin/python3: Debian's python3-torch 1.13.) This script starts the C++ side
(benchmarks/bench_compare.cpp, a long-lived process answering one line per command) and, for every
case it lists:

  1. the C++ side builds the case and writes its inputs (and random layer weights) to in.safetensors
     and its results (outputs, loss, every gradient) to out.safetensors; model weights are read from
     models/diffusion.safetensors by both sides;
  2. the torch side builds the same computation from tools/reference/common.py's modules (our
     architectures, parameters named and laid out through common.Params as our state dict), runs it
     on those inputs and compares: max |diffuse - torch| / max |torch| per tensor, and the run stops
     with a message if any tensor is above the case's tolerance;
  3. both are timed in alternating rounds (C++ case, then torch case), each side's round a calibrated
     number of calls lasting ~0.3 s (at least one call); the table shows the medians;
  4. each side's peak RSS during the timed rounds: VmHWM after freed memory is trimmed and "5" is
     written to clear_refs (so the torch side's checks of other variants do not count).

PyTorch runs in its best configuration here: the fastest of torch.set_num_threads(1, 2, 4, ... up to N)
per case (more threads are not always faster under passive waits), mkldnn on, an optimized BLAS for its float32 matrix products (OpenBLAS when installed,
even if the system's libblas.so.3 is the reference BLAS; OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs),
the faster of contiguous NCHW and channels_last for every case with feature maps, the faster of
torch.optim.Adam(foreach=True/False), forward-only cases under torch.inference_mode() in eval mode
(MultiheadAttention's fused path). Each torch variant is checked before it is timed. Both processes run
with OMP_WAIT_POLICY=PASSIVE (unless it is set): idle OpenMP threads must not spin on the cores while
the other side is timed.
"""
import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import re
import statistics
import struct
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args():
    ap = argparse.ArgumentParser(description="diffuse vs PyTorch, side by side (see the module docstring)")
    ap.add_argument("--threads", type=int, default=2, help="threads on both sides (default 2)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating timing rounds per case (default 7)")
    ap.add_argument("--cases", default="", help="comma-separated case-name prefixes (default: every case)")
    ap.add_argument("--out", help="also write the report (Markdown) to this file")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build-bench", "benchmarks", "bench_compare"),
                    help="the C++ side (default: build-bench/benchmarks/bench_compare)")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "diffusion.safetensors"))
    ap.add_argument("--target", type=float, default=0.3, help="seconds per side and round (default 0.3)")
    return ap.parse_args()


ARGS = parse_args()


def cpuinfo(key):
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return ""


def instruction_set():
    """The widest vector instruction set the CPU has, as the tables are kept per kind of CPU."""
    flags = cpuinfo("flags").split()
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def torch_thread_counts():
    """1, 2, 4, ... up to ARGS.threads, and ARGS.threads itself."""
    counts, n = {ARGS.threads}, 1
    while n < ARGS.threads:
        counts.add(n)
        n *= 2
    return sorted(counts)


# ---- BLAS: decided before torch is imported -------------------------------------------------------

LIBDIR = os.path.join("/usr/lib", sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")


def prefer_openblas():
    """Debian's torch calls the system libblas.so.3 for float32 matrix products (Linear, attention);
    the reference BLAS there runs them at ~2 GFLOP/s. If OpenBLAS is installed but not the system
    default, run again with its directory first on the library path (this process only)."""
    if os.environ.get("DIFFUSE_COMPARE_BLAS") is not None:
        return
    os.environ["DIFFUSE_COMPARE_BLAS"] = ""
    if "openblas" in os.path.realpath(os.path.join(LIBDIR, "libblas.so.3")):
        return
    for variant in ("openblas-openmp", "openblas-pthread", "openblas-serial"):
        d = os.path.join(LIBDIR, variant)
        if os.path.exists(os.path.join(d, "libblas.so.3")):
            path = [d] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
            env = dict(os.environ, DIFFUSE_COMPARE_BLAS=d, LD_LIBRARY_PATH=":".join(path))
            os.execve(sys.executable, [sys.executable] + sys.argv, env)


prefer_openblas()
if "OPENBLAS_CORETYPE" not in os.environ and "avx512f" in cpuinfo("flags").split():
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"  # Debian's OpenBLAS may fall back to SSE3 kernels otherwise
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))  # a pthread OpenBLAS ignores torch's setting
# Both sides use libgomp. Its idle threads spin for milliseconds after every parallel region: one side's
# spinning threads would take the cores from the other side while it is timed, and on a busy machine a
# side's own spinning threads take them from its main thread (a loop of small torch ops ran ~300x
# slower here). Both processes inherit this environment.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import common  # noqa: E402
from common import nchw, nhwc  # noqa: E402
from bench_client import BenchCompare  # noqa: E402

torch.set_num_threads(ARGS.threads)
torch.backends.mkldnn.enabled = True
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def die(msg):
    print(f"compare_torch: {msg}", file=sys.stderr)
    sys.exit(1)


def note(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- Memory ---------------------------------------------------------------------------------------

def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_own_peak_rss():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ---- Files ----------------------------------------------------------------------------------------

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def read_safetensors(path):
    """name -> tensor (F16/BF16/F32 as float32, F64 as float64, integers and bool as stored), and the
    metadata: the format is an 8-byte little-endian header length, a JSON header, raw data."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        dt = DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        size = torch.empty((), dtype=dt).element_size()
        t = (torch.frombuffer(data, dtype=dt, offset=begin, count=(end - begin) // size) if end > begin
             else torch.empty(0, dtype=dt)).reshape(e["shape"]).clone()
        out[name] = t.float() if t.is_floating_point() and dt != torch.float64 else t
    return out, meta


def load_params(P, tensors, prefix=""):
    """Copies tensors[prefix + name] into every parameter of P, through P's views of our layout."""
    with torch.no_grad():
        for name, p, view, _ in P.items:
            src = tensors.get(prefix + name)
            if src is None:
                die(f"no tensor '{prefix + name}' for the torch model")
            dst = view(p)
            if tuple(dst.shape) != tuple(src.shape):
                die(f"tensor '{prefix + name}' has shape {list(src.shape)}, the torch model {list(dst.shape)}")
            dst.copy_(src)


def collect(modules, prefixes):
    """common.Params over the modules (each under its prefix); every parameter must be named."""
    P = common.Params()
    for m, prefix in zip(modules, prefixes):
        m.collect(prefix, P)
    named = {id(p) for _, p, _, _ in P.items}
    missing = [n for m in modules for n, p in m.named_parameters() if id(p) not in named]
    if missing:
        die(f"parameters with no state-dict name: {missing[:5]}")
    return P


# ---- The torch side of each kind of case ----------------------------------------------------------
# A runner is built for one variant from the case's description (the C++ side's JSON), its inputs and
# the model weights. outputs() computes, from the initial state, what the C++ side wrote (in our
# layout, under its names); step() is the timed call. outputs_is_step: outputs() does step()'s work
# (its time may stand for a step's).

def clip_config(c):
    return common.ClipConfig(c["vocab"], c["context_length"], c["width"], c["heads"], c["layers"], c["hidden"])


def unet_config(c):
    return common.UnetConfig(c["latent_size"], c["latent_channels"], tuple(c["widths"]),
                             tuple(bool(a) for a in c["attention"]), c["res_blocks"], c["heads"], c["groups"],
                             c["context_length"], c["context_width"], c["time_features"], c["time_dim"])


def vae_config(c):
    return common.VaeConfig(c["image_size"], c["image_channels"], tuple(c["channels"]), c["latent_channels"],
                            c["res_blocks"], c["groups"], c["heads"])


def diffusion_modules(cfg, weights, prefix):
    """The text encoder and UNet with weights[prefix + "text_encoder.*" / "unet.*"]."""
    text, unet = common.TextEncoder(clip_config(cfg["clip"])), common.UNet(unet_config(cfg["unet"]))
    P = collect([text, unet], ["text_encoder.", "unet."])
    load_params(P, weights, prefix)
    return text, unet, P


def train_variants(info):
    return [(f, fe) for f in FORMATS for fe in (True, False)]


def variant_name(v):
    if isinstance(v, tuple):
        return f"{v[0]}, Adam foreach={v[1]}"
    return v if isinstance(v, str) else f"Adam foreach={v}"


def grads_of(P):
    return {"grad." + k: v for k, v in P.grads().items()}


class TrainRunner:
    """Text encoder + UNet step: encode → UNet → MSE vs the ε target → backward → Adam."""
    needs_weights, tol, floor = True, 1e-3, 1e-3
    variants = staticmethod(train_variants)

    def __init__(self, info, inp, variant, weights):
        fmt, foreach = FORMATS[variant[0]], variant[1]
        self.text, unet, self.P = diffusion_modules(info["config"], weights, "")
        self.unet = unet.to(memory_format=fmt)
        self.zt = nchw(inp["zt"]).contiguous(memory_format=fmt)
        self.target = nchw(inp["target"]).contiguous(memory_format=fmt)
        self.t, self.ids, self.mask = inp["t"].long(), inp["ids"].long(), inp["mask"]
        params = list(self.text.parameters()) + list(self.unet.parameters())
        self.opt = torch.optim.Adam(params, lr=info["lr"], foreach=foreach)

    def loss(self):
        context = self.text(self.ids, self.mask)
        return F.mse_loss(self.unet(self.zt, self.t, context, self.mask), self.target)

    def outputs(self):
        loss = self.loss()
        loss.backward()
        return {"loss": loss.detach().double().reshape(1), **grads_of(self.P)}

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        self.opt.step()


class VaeRunner:
    """AutoencoderKL step: moments → z = mean + exp(½·clamp(logvar))·ε → decode; loss = MSE + β·KL
    (KL = ½·mean(mean² + exp(logvar) − 1 − logvar), vae.hpp's per-element mean) → backward → Adam."""
    needs_weights, tol, floor = True, 1e-3, 1e-3
    variants = staticmethod(train_variants)

    def __init__(self, info, inp, variant, weights):
        fmt, foreach = FORMATS[variant[0]], variant[1]
        cfg = vae_config(info["config"]["vae"])
        enc, dec = common.VaeEncoder(cfg), common.VaeDecoder(cfg)
        self.P = collect([enc, dec], ["vae.encoder.", "vae.decoder."])
        load_params(self.P, weights)
        self.enc, self.dec = enc.to(memory_format=fmt), dec.to(memory_format=fmt)
        self.x = nchw(inp["x"]).contiguous(memory_format=fmt)
        self.eps = nchw(inp["eps"]).contiguous(memory_format=fmt)
        self.L, self.beta = cfg.latent_channels, info["kl_weight"]
        params = list(self.enc.parameters()) + list(self.dec.parameters())
        self.opt = torch.optim.Adam(params, lr=info["lr"], foreach=foreach)

    def losses(self):
        moments = self.enc(self.x)
        mean, logvar = moments[:, :self.L], moments[:, self.L:]
        lv = logvar.clamp(-30.0, 20.0)
        rec = F.mse_loss(self.dec(mean + torch.exp(0.5 * lv) * self.eps), self.x)
        kl = 0.5 * torch.mean(mean * mean + torch.exp(lv) - 1 - lv)
        return rec + self.beta * kl, rec, kl

    def outputs(self):
        loss, rec, kl = self.losses()
        loss.backward()
        scalar = lambda v: v.detach().double().reshape(1)  # noqa: E731
        return {"loss": scalar(loss), "reconstruction": scalar(rec), "kl": scalar(kl), **grads_of(self.P)}

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self.losses()[0].backward()
        self.opt.step()


def scaled_linear_alphas_cumprod(T, beta_start=0.00085, beta_end=0.012):
    """noise_schedule.hpp's scaled_linear: sqrt(beta) evenly spaced, squared; alpha_bar in float64."""
    a, b = math.sqrt(beta_start), math.sqrt(beta_end)
    out, prod = [], 1.0
    for t in range(T):
        s = a + (b - a) * t / (T - 1)
        prod *= 1 - s * s
        out.append(prod)
    return out


class SampleRunner:
    """Text encoding of both branches, DDIM (eta 0) with classifier-free guidance from the given z_T
    (two UNet calls of N per step, as generate() makes), VAE decode of z/latent_scale, clamp."""
    needs_weights, tol, floor = True, 1e-3, 1.0
    outputs_is_step = True
    absolute = True  # images in [-1, 1]: the error is absolute (scaled by max(max |torch|, 1))

    @staticmethod
    def variants(info):
        return list(FORMATS)

    def __init__(self, info, inp, variant, weights):
        fmt, cfg = FORMATS[variant], info["config"]
        if info["sampler"] != "ddim" or info["eta"] != 0 or info["spacing"] != "trailing":
            die(f"sample: the torch side implements DDIM, eta 0, trailing timesteps; got {info}")
        prefix = "ema." if info["weights"] == "ema" else ""
        self.text, unet, _ = diffusion_modules(cfg, weights, prefix)
        dec = common.VaeDecoder(vae_config(cfg["vae"]))
        load_params(collect([dec], ["vae.decoder."]), weights)
        self.unet, self.dec = unet.to(memory_format=fmt), dec.to(memory_format=fmt)
        for m in (self.text, self.unet, self.dec):
            m.eval()
        self.cond = (inp["ids_cond"].long(), inp["mask_cond"])
        self.uncond = (inp["ids_uncond"].long(), inp["mask_uncond"])
        self.noise = nchw(inp["noise"]).contiguous(memory_format=fmt)
        T, S = info["timesteps"], info["steps"]
        ab = scaled_linear_alphas_cumprod(T)
        ts = [round(T - i * T / S) - 1 for i in range(S)]  # samplers.hpp's "trailing" spacing
        self.plan = [(t, ab[t], ab[ts[i + 1]] if i + 1 < S else 1.0) for i, t in enumerate(ts)]
        self.guidance, self.inv_scale = info["guidance"], 1 / info["latent_scale"]

    def sample(self):
        with torch.inference_mode():
            cond, uncond = self.text(*self.cond), self.text(*self.uncond)
            z = self.noise
            tt = torch.empty(z.shape[0], dtype=torch.long)
            for t, ab, abn in self.plan:
                tt.fill_(t)
                ec = self.unet(z, tt, cond, self.cond[1])
                eu = self.unet(z, tt, uncond, self.uncond[1])
                eps = eu + self.guidance * (ec - eu)
                x0 = (1 / math.sqrt(ab)) * z - (math.sqrt(1 - ab) / math.sqrt(ab)) * eps
                z = math.sqrt(abn) * x0 + math.sqrt(1 - abn) * eps
            return self.dec(z * self.inv_scale).clamp(-1, 1)

    def outputs(self):
        return {"images": nhwc(self.sample())}

    def step(self):
        self.sample()


class AdamRunner:
    """One torch.optim.Adam step over every text-encoder and UNet parameter from the given gradients;
    compared: the parameters and both moments after it."""
    needs_weights, tol, floor = True, 2e-6, 0.0

    @staticmethod
    def variants(info):
        return [True, False]

    def __init__(self, info, inp, variant, weights):
        text, unet, self.P = diffusion_modules(info["config"], weights, "")
        with torch.no_grad():
            for name, p, view, _ in self.P.items:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                view(p.grad).copy_(inp["grad." + name])
        params = list(text.parameters()) + list(unet.parameters())
        self.opt = torch.optim.Adam(params, lr=info["lr"], betas=(info["beta1"], info["beta2"]), eps=info["eps"],
                                    foreach=variant)

    def outputs(self):
        self.opt.step()
        out = {}
        for name, p, view, _ in self.P.items:
            state = self.opt.state[p]
            out.update({"param." + name: view(p.detach()).clone(), "m." + name: view(state["exp_avg"]).clone(),
                        "v." + name: view(state["exp_avg_sq"]).clone()})
        return out

    def step(self):
        self.opt.step()


class LayerRunner:
    """One layer with the C++ side's random weights ("layer.*"): forward under inference_mode (eval),
    or forward + backward of the given upstream gradient (gradients accumulate, as ours do)."""
    needs_weights, tol, floor = False, 1e-4, 1e-2

    @staticmethod
    def variants(info):
        return list(FORMATS) if info["kind"] in ("conv", "groupnorm") else ["default"]

    def __init__(self, info, inp, variant, weights):
        kind = info["kind"]
        self.spatial = kind in ("conv", "groupnorm")
        fmt = FORMATS.get(variant, torch.contiguous_format)
        P = common.Params()
        if kind == "conv":
            m = nn.Conv2d(info["cin"], info["cout"], 3, padding=1)
            P.conv("layer", m)
        elif kind == "groupnorm":
            m = nn.GroupNorm(info["groups"], info["channels"])
            P.norm("layer", m)
        elif kind == "layernorm":
            m = nn.LayerNorm(info["width"])
            P.norm("layer", m)
        elif kind == "linear":
            m = nn.Linear(info["in"], info["out"])
            P.plain("layer", m)
        elif kind == "attention":
            m = nn.MultiheadAttention(info["width"], info["heads"], batch_first=True)
            P.mha("layer", m)
        else:
            die(f"unknown layer kind {kind}")
        load_params(P, inp)
        self.P, self.kind, self.backward = P, kind, bool(info["backward"])
        self.module = m.to(memory_format=fmt) if self.spatial else m
        prep = (lambda t: nchw(t).contiguous(memory_format=fmt)) if self.spatial else (lambda t: t.contiguous())
        # Copies of the inputs: their .grad must not accumulate across the variants built from them.
        self.args, self.arg_names = [prep(inp["x"]).detach().clone()], ["dx"]
        if kind == "attention" and not info["self"]:
            self.args.append(inp["context"].detach().clone())
            self.arg_names.append("dcontext")
        self.mask = inp.get("mask")
        self.dy = prep(inp["dy"])
        if self.backward:
            for a in self.args:
                a.requires_grad_(True)
        else:
            self.module.eval()

    def forward(self):
        if self.kind == "attention":
            x = self.args[0]
            c = self.args[1] if len(self.args) > 1 else x
            return self.module(x, c, c, key_padding_mask=self.mask, need_weights=False)[0]
        return self.module(self.args[0])

    def ours(self, t):
        return nhwc(t) if self.spatial else t

    def outputs(self):
        if not self.backward:
            with torch.inference_mode():
                return {"y": self.ours(self.forward()).clone()}
        y = self.forward()
        y.backward(self.dy)
        out = {"y": self.ours(y.detach())}
        out.update((n, self.ours(a.grad)) for n, a in zip(self.arg_names, self.args))
        out.update(grads_of(self.P))
        return out

    def step(self):
        if self.backward:
            self.forward().backward(self.dy)
        else:
            with torch.inference_mode():
                self.forward()


RUNNERS = {"train": TrainRunner, "vae": VaeRunner, "sample": SampleRunner, "adam": AdamRunner}
for _k in ("conv", "groupnorm", "layernorm", "linear", "attention"):
    RUNNERS[_k] = LayerRunner


# ---- Checks and timing ----------------------------------------------------------------------------

def compare(case, cpp, mine, runner):
    """The largest max |diffuse − torch| / max(max |torch|, floor) over the tensors (floor: the
    runner's share of the largest |torch| over all of them, for gradients that are zero up to
    rounding, such as attention's key bias). Returns (error, tensor name, the failure above the
    runner's tolerance or None)."""
    if set(cpp) != set(mine):
        die(f"{case}: the sides wrote different tensors: only diffuse {sorted(set(cpp) - set(mine))[:5]}, "
            f"only torch {sorted(set(mine) - set(cpp))[:5]}")
    pairs = {}
    for k, want in mine.items():
        got, want = cpp[k].double(), want.detach().double()
        if got.shape != want.shape:
            die(f"{case}: '{k}' has shape {list(got.shape)} here, {list(want.shape)} in torch")
        pairs[k] = (got, want)
    floor = runner.floor
    if not getattr(runner, "absolute", False):
        floor *= max(w.abs().max().item() for _, w in pairs.values())
    worst, where, failure = 0.0, "", None
    for k, (got, want) in pairs.items():
        diff = (got - want).abs().reshape(-1)
        i = int(torch.argmax(torch.nan_to_num(diff, nan=math.inf)))
        err = diff[i].item() / max(want.abs().max().item(), floor, 1e-300)
        if not math.isfinite(err) or not torch.isfinite(got).all():
            err = math.inf
        if err > runner.tol and failure is None:
            failure = (f"'{k}' scaled error {err:.3g} > {runner.tol:g} (at flat index {i}: diffuse "
                       f"{got.reshape(-1)[i].item():.9g}, torch {want.reshape(-1)[i].item():.9g})")
        if err >= worst:
            worst, where = err, k
    return worst, where, failure


def timed(fn, k):
    t = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t) / k


def calls_for(seconds):
    return max(1, math.ceil(ARGS.target / max(seconds, 1e-9)))


class Cpp(BenchCompare):
    """The C++ side."""

    def __init__(self, binary):
        if not os.access(binary, os.X_OK):
            die(f"no C++ side at {binary} (build the bench_compare target, or pass --binary)")
        super().__init__(binary, ARGS.threads, ARGS.model, lambda m: die(f"C++ side: {m}"))


def run_case(name, cpp, tmp):
    reset_own_peak_rss()
    info = json.loads(cpp.ask("setup", name, tmp))
    inp, _ = read_safetensors(os.path.join(tmp, "in.safetensors"))
    out, _ = read_safetensors(os.path.join(tmp, "out.safetensors"))
    R = RUNNERS[info["kind"]]
    weights = read_safetensors(ARGS.model)[0] if R.needs_weights else None

    # Every torch variant at every thread count: built fresh, checked, timed briefly; the fastest is
    # rebuilt for the rounds.
    # A torch variant that disagrees is left out when another agrees (the notes under the table say
    # so); the run stops when none agrees.
    error, tensor, best, rejected = 0.0, "", None, []
    for v, threads in ((v, n) for v in R.variants(info) for n in torch_thread_counts()):
        torch.set_num_threads(threads)
        r = R(info, inp, v, weights)
        t = time.perf_counter()
        mine = r.outputs()
        t = time.perf_counter() - t
        e, k, failure = compare(name, out, mine, r)
        del mine
        if failure:
            note(f"  torch {variant_name(v)}, {threads} threads: DISAGREES, left out: {failure}")
            rejected.append((f"{variant_name(v)}, {threads} threads", failure))
            del r
            gc.collect()
            continue
        if e >= error:
            error, tensor = e, k
        if not (getattr(r, "outputs_is_step", False) and t > 1):
            t = timed(r.step, 1)
            if t < 0.1:
                t = min(t, timed(r.step, max(1, calls_for(t) // 3)))
        note(f"  torch {variant_name(v)}, {threads} threads: check {e:.2g} ({k}), {seconds_str(t)}")
        if best is None or t < best[1]:
            best = (v, t, threads)
        del r
        gc.collect()
    if best is None:
        die(f"CHECK FAILED: {name}: no torch variant agrees with diffuse; the first: {rejected[0][1]}")
    torch.set_num_threads(best[2])
    r = R(info, inp, best[0], weights)
    del weights
    k_torch = 1
    if best[1] < 1:  # else one call a round, and a slow call needs no warm-up
        timed(r.step, 1)
        k_torch = calls_for(timed(r.step, 1))
    k_cpp = 1
    if info["setup_seconds"] < 1:  # the setup ran the case once
        k_cpp = calls_for(min(cpp.run(1)[0], cpp.run(1)[0]))

    # Peak RSS over the timed rounds: both sides drop what they no longer hold and restart the mark.
    del inp, out
    reset_own_peak_rss()
    cpp.ask("reset")
    cpp_t, aux_t, torch_t = [], [], []
    for _ in range(ARGS.rounds):
        c = cpp.run(k_cpp)
        cpp_t.append(c[0])
        aux_t.append(c[1:])
        torch_t.append(timed(r.step, k_torch))
    row = {
        "case": name, "info": info, "diffuse": statistics.median(cpp_t), "torch": statistics.median(torch_t),
        "error": error, "tensor": tensor, "tol": R.tol,
        "variant": f"{variant_name(best[0])}, {best[2]} thread{'s' if best[2] > 1 else ''}", "rejected": rejected,
        "rss_cpp": status_kb(cpp.p.pid, "VmHWM") * 1024, "rss_torch": status_kb("self", "VmHWM") * 1024,
        "calls": (k_cpp, k_torch),
        "aux": [statistics.median(a[i] for a in aux_t) for i in range(len(aux_t[0]))] if aux_t[0] else [],
    }
    del r
    torch.set_num_threads(ARGS.threads)
    return row


# ---- Report ---------------------------------------------------------------------------------------

def seconds_str(s):
    return f"{s:.3g} s" if s >= 1 else f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def mb(b):
    return f"{b / 1e6:.0f} MB" if b >= 1e7 else f"{b / 1e6:.1f} MB"


def blas_description():
    """The BLAS library torch loaded, and OpenBLAS's kernel set."""
    built_with = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    if built_with and built_with.group(1) == "mkl":  # pip's torch calls its own MKL (a BLAS numpy loaded is not the one it uses)
        return "MKL (linked into torch)"
    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1] for line in f if "blas" in line.split()[-1]})
    if not libs:
        return "no BLAS library loaded"
    lib = next((p for p in libs if "openblas" in p), libs[0])
    if "openblas" not in lib:
        return f"{os.path.basename(lib)} (the reference BLAS: slow; install libopenblas0-openmp)"
    desc = "OpenBLAS"
    try:
        so = ctypes.CDLL(lib)
        so.openblas_get_corename.restype = so.openblas_get_config.restype = ctypes.c_char_p
        desc = f"{so.openblas_get_config().decode().strip()}, {so.openblas_get_corename().decode()} kernels"
    except (OSError, AttributeError):
        pass
    if os.environ.get("DIFFUSE_COMPARE_BLAS"):
        desc += " (LD_LIBRARY_PATH; the system libblas.so.3 is the reference BLAS)"
    if os.environ.get("OPENBLAS_CORETYPE"):
        desc += f", OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}"
    return desc


def torch_isa_caps():
    """Caps on torch's instruction sets from the environment (ATen's dispatch, oneDNN), if any."""
    caps = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
            if os.environ.get(k)]
    return f", {' '.join(caps)}" if caps else ""


def report(rows, baselines, elapsed, isa):
    cpu = cpuinfo("model name") or "unknown CPU"
    mkldnn = torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()
    lines = [
        "# diffuse vs PyTorch",
        "",
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} · {cpu} ({instruction_set()}, family "
        f"{cpuinfo('cpu family')} model {cpuinfo('model')}; {len(os.sched_getaffinity(0))} of "
        f"{os.cpu_count()} logical CPUs) · diffuse ({isa} kernels) on "
        f"{ARGS.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} · "
        f"torch {torch.__version__}{torch_isa_caps()}: mkldnn {'on' if mkldnn else 'off'}, "
        f"BLAS {blas_description()}; per case the fastest of set_num_threads({' / '.join(map(str, torch_thread_counts()))}), "
        f"of NCHW / channels_last and of Adam foreach=True / False "
        f"(each checked; the one kept is in the last column); forward-only cases under inference_mode in eval mode "
        f"· {ARGS.rounds} alternating rounds of ≥ {ARGS.target:g} s per side (at least one call), medians",
        "",
        "| case | diffuse median | PyTorch median | ratio (torch/diffuse) | check error | peak RSS diffuse "
        "| peak RSS torch | PyTorch variant |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        rss = mb(r["rss_cpp"])
        if "constexpr_bytes" in r["info"]:
            rss += f" (constexpr {mb(r['info']['constexpr_bytes'])})"
        lines.append(f"| {r['case']} | {seconds_str(r['diffuse'])} | {seconds_str(r['torch'])} | "
                     f"{r['torch'] / r['diffuse']:.2f} | {r['error']:.1e} | {rss} | {mb(r['rss_torch'])} | "
                     f"{r['variant']} |")
    lines += ["", "Notes:"]
    for r in rows:
        for variant, failure in r["rejected"]:
            lines.append(f"- {r['case']}: torch {variant} disagreed with diffuse and with torch's other variants "
                         f"and was left out: {failure}.")
    for r in rows:
        if r["aux"]:
            a = r["aux"][0]
            lines.append(f"- {r['case']}: diffuse's Adam step {seconds_str(r['diffuse'])}, a plain fused loop with "
                         f"the same memory traffic (read p, g, m, v; write p, m, v; {r['info']['buffer']:.0f} "
                         f"floats) {seconds_str(a)}: Adam/loop = {r['diffuse'] / a:.2f} (its peak RSS includes "
                         f"the loop's four buffers).")
    lines += [
        "- Cases: the Default preset at batch 32 (examples/train.cpp's kBatch; sample: 16). train: text encoder "
        "+ UNet step (encode, UNet, MSE to the ε target, backward through both, Adam) on the shipped raw "
        "weights, no clipping or EMA on either side; vae: AutoencoderKL step (given ε, MSE + 1e-4·KL, Adam); "
        "sample: 16 prompts, DDIM 50 steps (eta 0, trailing timesteps), guidance 3 against the empty prompt, "
        "EMA weights, VAE decode of z/latent_scale, clamp (diffuse: LatentDiffusion::generate with a reused "
        "workspace, tokenization included; torch: the same token ids and z_T); adam: one step over the text "
        "encoder and UNet; layers: random weights and inputs.",
        "- Check error: max |diffuse − torch| / max |torch| of each tensor, the largest over the case's tensors "
        "and all torch variants. Tolerances: layers 1e-4 (output, input and parameter gradients), train and vae "
        "1e-3 (loss and every parameter gradient, before Adam), adam 2e-6 (every parameter and both moments "
        "after the step; a float32 rounding of p is 6e-8 of |p|, and the attention key biases, ~1e-6 in the "
        "shipped weights, compare the update itself), sample 1e-3 absolute (images in [−1, 1]). Gradients that "
        "are zero up to rounding (attention's key bias) are scaled by a floor: 1e-3 (train, vae) or 1e-2 "
        "(layers) of the case's largest |torch| value.",
        "- Peak RSS: VmHWM over the timed rounds (reset after the checks, freed memory trimmed), each process's "
        f"baseline included (diffuse {mb(baselines[0])}; Python with torch imported {mb(baselines[1])}). "
        "Constexpr (train, vae): parameters + gradients + Adam m and v + the step's workspace, sizes known at "
        "compile time.",
        f"- Whole run: {elapsed:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main():
    t0 = time.perf_counter()
    baseline_torch = status_kb("self", "VmRSS") * 1024
    cpp = Cpp(ARGS.binary)
    names = cpp.ask("list").split("\t")
    isa = cpp.ask("isa")
    baseline_cpp = status_kb(cpp.p.pid, "VmRSS") * 1024
    prefixes = [p.strip() for p in ARGS.cases.split(",") if p.strip()]
    chosen = [n for n in names if not prefixes or any(n.startswith(p) for p in prefixes)]
    if not chosen:
        die(f"no case matches {ARGS.cases!r}; the cases: {', '.join(names)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="diffuse-compare-") as tmp:
        for name in chosen:
            note(f"{name}:")
            rows.append(run_case(name, cpp, tmp))
            r = rows[-1]
            note(f"  diffuse {seconds_str(r['diffuse'])}, torch {seconds_str(r['torch'])} ({r['variant']}), "
                 f"check {r['error']:.2g} ({r['tensor']}), calls per round {r['calls']}")
    cpp.close()
    text = report(rows, (baseline_cpp, baseline_torch), time.perf_counter() - t0, isa)
    print(text, end="")
    if ARGS.out:
        with open(ARGS.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
