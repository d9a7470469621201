// Layer throughput: forward and forward+backward of Conv2d, Linear and MultiHeadAttention in FLOP/s
// beside this machine's measured SGEMM rate (diffuse::gemm, 1024³) and FP32 FMA peak (a
// register-resident FMA loop), and LayerNorm / GroupNorm in B/s beside a plain streaming loop, all on
// the same thread count, timed by Google Benchmark (benchmarks/gbench.hpp: repetitions in random
// interleaved order, medians, counters FLOP/s and B/s, JSON with --benchmark_out).
//
//   cmake -S . -B build -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_layers
//   OMP_NUM_THREADS=1 build/benchmarks/bench_layers [--benchmark_filter=Conv] [--benchmark_* flags]
//
// Every kernel is checked before it is timed, and a wrong one aborts the run:
//  - against direct sums in double: Conv2d and Linear y, dx, dweight, dbias at entries sampled over
//    the whole tensors (plus all of the first and last image or row of y); LayerNorm and GroupNorm
//    y, dx, dweight, dbias everywhere; MultiHeadAttention y of the first and last samples;
//  - the whole float forward + backward (output, input gradients, every parameter gradient)
//    against the same layer run in double on the same inputs and parameters.
//
// FLOPs count only the GEMM-like work, 2·M·N·K per product (bias, im2col, softmax, norms ignored);
// backward is two such products per forward one (input and weight gradients), so fwd+bwd = 3 × fwd:
//   Conv2d: 2 · (N·Ho·Wo) · Cout · (K·K·Cin);  Linear: 2 · rows · Out · In;
//   MHA: 4·N·Tq·D² (q, out projections) + 4·N·Tk·Dkv·D (k, v) + 4·N·Tq·Tk·D (q·kᵀ and P·v, all heads).
// Norm bytes: fwd 2·4·numel (read x, write y); fwd+bwd 6·4·numel (then read x, dy; read+write dx).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/norm.hpp"

#include "bench_util.hpp"
#include "gbench.hpp"

using namespace diffuse;
using namespace diffuse::bench;

namespace {

/// Tolerances, on the error scaled by the reference's largest magnitude (see scaled_error).
constexpr double kTolNaive = 1e-4;   // float layer vs direct double computation
constexpr double kTolDouble = 1e-4;  // float layer vs the same layer in double

/// What the driver needs from a case, whatever its element type.
struct Case {
    virtual ~Case() = default;
    virtual void forward() = 0;
    virtual void backward() = 0;
    std::string kind, config;
    double fwd_work = 0, fb_work = 0;  // FLOPs, or bytes for a memory-bound layer
    bool memory_bound = false;
    std::string checks;                         // the measured check errors, for the log
    const char* naive_scope = "y, dx, dW, db";  // what naive_check() covers
};

/// A flat array a case exposes for checks.
template <class T>
struct Arr {
    std::string name;
    T* p;
    std::size_t n;
};

/// A case's layer, its parameters and a heap workspace W<T> of tensors.
template <class T, class L, class W>
struct LayerCase : Case {
    L layer;
    ParamStore<T> store{layer, 1};
    std::unique_ptr<W> w = make<W>();
};

// ---------------------------------------------------------------------------------------------
// Conv2d, "same" padding: FLOPs(fwd) = 2 · (N·Ho·Wo) · Cout · (K·K·Cin)

template <class T, int N, int H, int Cin, int Cout, int K, int S>
struct ConvWork {
    using L = Conv2d<T, Cin, Cout, K, S>;
    using XS = Shape<N, H, H, Cin>;
    using YS = typename L::template output_shape<XS>;
    TensorOf<T, XS> x, dx;  // [N, H, W, Cin]
    TensorOf<T, YS> y, dy;  // [N, Ho, Wo, Cout]
    typename L::template Cache<XS> cache;
};

template <class T, int N, int H, int Cin, int Cout, int K, int S>
struct ConvCase : LayerCase<T, Conv2d<T, Cin, Cout, K, S>, ConvWork<T, N, H, Cin, Cout, K, S>> {
    using WK = ConvWork<T, N, H, Cin, Cout, K, S>;
    using XS = typename WK::XS;
    using YS = typename WK::YS;
    ConvCase() {
        this->kind = "Conv2d";
        this->config = fmt("%dx%d%s %d→%d, %dx%d→%dx%d", K, K, S > 1 ? fmt(" s%d", S).c_str() : "", Cin, Cout, H, H,
                           YS::template dim<1>, YS::template dim<2>);
        this->fwd_work = 2.0 * YS::rows * Cout * (K * K * Cin);
        this->fb_work = 3 * this->fwd_work;
    }
    void forward() override { this->layer.forward(this->w->x, this->w->y, this->w->cache); }
    void backward() override { this->layer.backward(this->w->x, this->w->y, this->w->cache, this->w->dy, this->w->dx); }
    std::vector<Arr<T>> inputs() { return {{"x", this->w->x.data(), XS::size}, {"dy", this->w->dy.data(), YS::size}}; }
    std::vector<Arr<T>> outputs() { return {{"y", this->w->y.data(), YS::size}, {"dx", this->w->dx.data(), XS::size}}; }

    /// Direct double sums: y on the whole first and last image and at random entries, dx and
    /// dweight at random entries, dbias everywhere (p = (K-1)/2; x is zero outside the image):
    ///   y[n,oh,ow,o]  = b[o] + Σ_{kh,kw,c} W[o,kh,kw,c]·x[n, oh·S-p+kh, ow·S-p+kw, c]
    ///   dx[n,ih,iw,c] = Σ_{o,kh,kw : ih = oh·S-p+kh, iw = ow·S-p+kw} dy[n,oh,ow,o]·W[o,kh,kw,c]
    ///   dW[o,kh,kw,c] = Σ_{n,oh,ow} dy[n,oh,ow,o]·x[n, oh·S-p+kh, ow·S-p+kw, c],   db[o] = Σ dy[..., o]
    double naive_check() {
        constexpr int Ho = YS::template dim<1>, Wo = YS::template dim<2>, pad = (K - 1) / 2;
        auto& w = *this->w;
        const auto& ly = this->layer;
        auto X = [&](int n, int ih, int iw, int c) {
            return ih < 0 || ih >= H || iw < 0 || iw >= H ? 0.0 : double(w.x(n, ih, iw, c));
        };
        auto widx = [](int o, int kh, int kw, int c) { return ((std::size_t(o) * K + kh) * K + kw) * Cin + c; };
        const std::string name = this->kind + " " + this->config;
        Samples y{name + " y vs naive"}, dx{name + " dx vs naive"}, dw{name + " dweight vs naive"},
            db{name + " dbias vs naive"};
        Rng rng(11);
        auto pick = [&](int n) { return int(rng.below(std::uint64_t(n))); };
        auto add_y = [&](int n, int oh, int ow, int o) {
            double s = ly.bias.value_ptr[o];
            for (int kh = 0; kh < K; ++kh)
                for (int kw = 0; kw < K; ++kw)
                    for (int c = 0; c < Cin; ++c)
                        s += double(ly.weight.value_ptr[widx(o, kh, kw, c)]) *
                             X(n, oh * S - pad + kh, ow * S - pad + kw, c);
            y.add(w.y(n, oh, ow, o), s);
        };
        for (int n : {0, N - 1})
            for (int oh = 0; oh < Ho; ++oh)
                for (int ow = 0; ow < Wo; ++ow)
                    for (int o = 0; o < Cout; ++o) add_y(n, oh, ow, o);
        for (int k = 0; k < 2048; ++k) add_y(pick(N), pick(Ho), pick(Wo), pick(Cout));
        for (int k = 0; k < 2048; ++k) {
            const int n = pick(N), ih = pick(H), iw = pick(H), c = pick(Cin);
            double s = 0;
            for (int kh = 0; kh < K; ++kh)
                for (int kw = 0; kw < K; ++kw) {
                    const int a = ih + pad - kh, b = iw + pad - kw;  // oh·S and ow·S
                    if (a < 0 || b < 0 || a % S || b % S || a / S >= Ho || b / S >= Wo) continue;
                    for (int o = 0; o < Cout; ++o)
                        s += double(w.dy(n, a / S, b / S, o)) * double(ly.weight.value_ptr[widx(o, kh, kw, c)]);
                }
            dx.add(w.dx(n, ih, iw, c), s);
        }
        for (int k = 0; k < 256; ++k) {
            const int o = pick(Cout), kh = pick(K), kw = pick(K), c = pick(Cin);
            double s = 0;
            for (int n = 0; n < N; ++n)
                for (int oh = 0; oh < Ho; ++oh)
                    for (int ow = 0; ow < Wo; ++ow)
                        s += double(w.dy(n, oh, ow, o)) * X(n, oh * S - pad + kh, ow * S - pad + kw, c);
            dw.add(ly.weight.grad_ptr[widx(o, kh, kw, c)], s);
        }
        std::vector<double> sb(Cout, 0.0);
        for (std::size_t m = 0; m < std::size_t(YS::rows); ++m)
            for (int o = 0; o < Cout; ++o) sb[o] += w.dy[m * Cout + o];
        for (int o = 0; o < Cout; ++o) db.add(ly.bias.grad_ptr[o], sb[o]);
        return std::max({y.check(kTolNaive), dx.check(kTolNaive), dw.check(kTolNaive), db.check(kTolNaive)});
    }
};

// ---------------------------------------------------------------------------------------------
// Linear over M rows: FLOPs(fwd) = 2 · M · Out · In

template <class T, int M, int In, int Out>
struct LinearWork {
    Tensor<T, M, In> x, dx;
    Tensor<T, M, Out> y, dy;
};

template <class T, int M, int In, int Out>
struct LinearCase : LayerCase<T, Linear<T, In, Out>, LinearWork<T, M, In, Out>> {
    LinearCase() {
        this->kind = "Linear";
        this->config = fmt("%d rows, %d→%d", M, In, Out);
        this->fwd_work = 2.0 * M * Out * In;
        this->fb_work = 3 * this->fwd_work;
    }
    void forward() override { this->layer.forward(this->w->x, this->w->y); }
    void backward() override { this->layer.backward(this->w->x, this->w->y, this->w->dy, this->w->dx); }
    std::vector<Arr<T>> inputs() { return {{"x", this->w->x.data(), M * In}, {"dy", this->w->dy.data(), M * Out}}; }
    std::vector<Arr<T>> outputs() { return {{"y", this->w->y.data(), M * Out}, {"dx", this->w->dx.data(), M * In}}; }

    /// Direct double sums: y on the first and last rows and at random entries, dx and dweight at
    /// random entries, dbias everywhere:
    ///   y[m,o] = b[o] + Σ_i W[o,i]·x[m,i],  dx[m,i] = Σ_o dy[m,o]·W[o,i],
    ///   dW[o,i] = Σ_m dy[m,o]·x[m,i],       db[o] = Σ_m dy[m,o]
    double naive_check() {
        auto& w = *this->w;
        const auto& ly = this->layer;
        const std::string name = this->kind + " " + this->config;
        Samples y{name + " y vs naive"}, dx{name + " dx vs naive"}, dw{name + " dweight vs naive"},
            db{name + " dbias vs naive"};
        Rng rng(12);
        auto pick = [&](int n) { return int(rng.below(std::uint64_t(n))); };
        auto add_y = [&](int m, int o) {
            double s = ly.bias.value_ptr[o];
            for (int i = 0; i < In; ++i) s += double(ly.weight.value_ptr[std::size_t(o) * In + i]) * double(w.x(m, i));
            y.add(w.y(m, o), s);
        };
        for (int m : {0, M - 1})
            for (int o = 0; o < Out; ++o) add_y(m, o);
        for (int k = 0; k < 2048; ++k) add_y(pick(M), pick(Out));
        for (int k = 0; k < 2048; ++k) {
            const int m = pick(M), i = pick(In);
            double s = 0;
            for (int o = 0; o < Out; ++o)
                s += double(w.dy(m, o)) * double(ly.weight.value_ptr[std::size_t(o) * In + i]);
            dx.add(w.dx(m, i), s);
        }
        for (int k = 0; k < 256; ++k) {
            const int o = pick(Out), i = pick(In);
            double s = 0;
            for (int m = 0; m < M; ++m) s += double(w.dy(m, o)) * double(w.x(m, i));
            dw.add(ly.weight.grad_ptr[std::size_t(o) * In + i], s);
        }
        for (int o = 0; o < Out; ++o) {
            double s = 0;
            for (int m = 0; m < M; ++m) s += w.dy(m, o);
            db.add(ly.bias.grad_ptr[o], s);
        }
        return std::max({y.check(kTolNaive), dx.check(kTolNaive), dw.check(kTolNaive), db.check(kTolNaive)});
    }
};

// ---------------------------------------------------------------------------------------------
// MultiHeadAttention, queries x [N, Tq, D], keys/values from a context [N, Tk, Dkv] (x itself when
// self attention). FLOPs(fwd) = projections 2·N·Tq·D·D (q) + 2·2·N·Tk·Dkv·D (k, v) + 2·N·Tq·D·D (out)
// + attention 2·N·Tq·Tk·D (q·kᵀ, all heads) + 2·N·Tq·Tk·D (P·v).

template <class T, int N, int Tq, int Tk, int D, int Heads, int Dkv>
struct AttentionWork {
    using L = MultiHeadAttention<T, D, Heads, Dkv>;
    using XS = Shape<N, Tq, D>;
    using CS = Shape<N, Tk, Dkv>;
    TensorOf<T, XS> x, dx, y, dy;              // [N, Tq, D]
    TensorOf<T, CS> c, dc;                     // [N, Tk, Dkv], unused by self attention
    typename L::template Cache<XS, CS> cache;  // self attention: CS is XS
};

/// Self = 1: self attention (Tk == Tq, Dkv == D), through forward_self / backward_self.
template <class T, int N, int Tq, int Tk, int D, int Heads, int Dkv, int Self>
struct AttentionCase : LayerCase<T, MultiHeadAttention<T, D, Heads, Dkv>, AttentionWork<T, N, Tq, Tk, D, Heads, Dkv>> {
    static_assert(!Self || (Tq == Tk && D == Dkv), "AttentionCase: self attention reads its own input");
    AttentionCase() {
        this->kind = Self ? "MHA self" : "MHA cross";
        this->naive_scope = "y of 2 samples";
        this->config = Self ? fmt("%d tok, D %d, %d heads, N %d", Tq, D, Heads, N)
                            : fmt("%d tok ← %d ctx tok of %d, D %d, %d heads, N %d", Tq, Tk, Dkv, D, Heads, N);
        this->fwd_work = 4.0 * N * Tq * D * D + 4.0 * N * Tk * Dkv * D + 4.0 * N * Tq * Tk * D;
        this->fb_work = 3 * this->fwd_work;
    }
    void forward() override {
        auto& w = *this->w;
        if constexpr (Self) this->layer.forward_self(w.x, no_mask, w.y, w.cache);
        else this->layer.forward(w.x, w.c, no_mask, w.y, w.cache);
    }
    void backward() override {
        auto& w = *this->w;
        if constexpr (Self) this->layer.backward_self(w.x, no_mask, w.y, w.cache, w.dy, w.dx);
        else this->layer.backward(w.x, w.c, no_mask, w.y, w.cache, w.dy, w.dx, w.dc);
    }
    std::vector<Arr<T>> inputs() {
        auto& w = *this->w;
        return {{"x", w.x.data(), w.x.size}, {"context", w.c.data(), w.c.size}, {"dy", w.dy.data(), w.dy.size}};
    }
    std::vector<Arr<T>> outputs() {
        auto& w = *this->w;
        std::vector<Arr<T>> o{{"y", w.y.data(), w.y.size}, {"dx", w.dx.data(), w.dx.size}};
        if (!Self) o.push_back({"dcontext", w.dc.data(), w.dc.size});
        return o;
    }

    /// y of the first and last samples directly, in double: projections, per-head
    /// softmax(q kᵀ/√dh)·v, output projection. (Backward: float vs double only.)
    double naive_check() {
        Samples y{this->kind + " " + this->config + " y vs naive"};
        for (int n : {0, N - 1}) naive_sample(n, y);
        return y.check(kTolNaive);
    }
    void naive_sample(int n, Samples& out) {
        constexpr int dh = D / Heads;
        const auto& ly = this->layer;
        auto& w = *this->w;
        const T* c = Self ? w.x.data() : w.c.data();
        const int cw = Self ? D : Dkv;
        auto project = [](const auto& lin, const T* in, int rows, int width) {
            std::vector<double> out(std::size_t(rows) * D);
            for (int t = 0; t < rows; ++t)
                for (int j = 0; j < D; ++j) {
                    double s = lin.bias.value_ptr[j];
                    for (int i = 0; i < width; ++i)
                        s += double(lin.weight.value_ptr[std::size_t(j) * width + i]) *
                             double(in[std::size_t(t) * width + i]);
                    out[std::size_t(t) * D + j] = s;
                }
            return out;
        };
        const auto q = project(ly.q_proj, w.x.data() + std::size_t(n) * Tq * D, Tq, D);
        const auto k = project(ly.k_proj, c + std::size_t(n) * Tk * cw, Tk, cw);
        const auto v = project(ly.v_proj, c + std::size_t(n) * Tk * cw, Tk, cw);
        std::vector<double> ctx(Tq * std::size_t(D)), p(Tk);
        for (int h = 0; h < Heads; ++h)
            for (int t = 0; t < Tq; ++t) {
                double mx = -1e300, z = 0;
                for (int j = 0; j < Tk; ++j) {
                    double s = 0;
                    for (int e = 0; e < dh; ++e)
                        s += q[std::size_t(t) * D + h * dh + e] * k[std::size_t(j) * D + h * dh + e];
                    p[j] = s / std::sqrt(double(dh));
                    mx = std::max(mx, p[j]);
                }
                for (auto& pj : p) z += (pj = std::exp(pj - mx));
                for (int e = 0; e < dh; ++e) {
                    double s = 0;
                    for (int j = 0; j < Tk; ++j) s += p[j] / z * v[std::size_t(j) * D + h * dh + e];
                    ctx[std::size_t(t) * D + h * dh + e] = s;
                }
            }
        std::vector<double> want(Tq * std::size_t(D));
        for (int t = 0; t < Tq; ++t)
            for (int j = 0; j < D; ++j) {
                double s = ly.out_proj.bias.value_ptr[j];
                for (int i = 0; i < D; ++i)
                    s += double(ly.out_proj.weight.value_ptr[std::size_t(j) * D + i]) * ctx[std::size_t(t) * D + i];
                want[std::size_t(t) * D + j] = s;
            }
        for (std::size_t i = 0; i < want.size(); ++i) out.add(w.y[std::size_t(n) * Tq * D + i], want[i]);
    }
};

// ---------------------------------------------------------------------------------------------
// LayerNorm and GroupNorm are memory-bound: bytes(fwd) = 2 · 4 · numel (read x, write y);
// bytes(fwd+bwd) = 6 · 4 · numel (forward, then read x and dy, read and write dx).

template <class T, class L, class XS>
struct NormWork {
    TensorOf<T, XS> x, dx, y, dy;
    typename L::template Cache<XS> cache;
};

/// Items of Rows rows of C channels in Groups groups (LayerNorm: 1 row, 1 group).
template <class T, class L, class XS, int Rows, int Groups>
struct NormCase : LayerCase<T, L, NormWork<T, L, XS>> {
    static constexpr int C = XS::last, items = int(XS::size / (std::size_t(Rows) * C));
    NormCase(std::string kind, std::string config) {
        this->kind = std::move(kind);
        this->config = std::move(config);
        this->memory_bound = true;
        this->fwd_work = 2.0 * sizeof(T) * XS::size;
        this->fb_work = 6.0 * sizeof(T) * XS::size;
    }
    void forward() override { this->layer.forward(this->w->x, this->w->y, this->w->cache); }
    void backward() override { this->layer.backward(this->w->x, this->w->y, this->w->cache, this->w->dy, this->w->dx); }
    std::vector<Arr<T>> inputs() { return {{"x", this->w->x.data(), XS::size}, {"dy", this->w->dy.data(), XS::size}}; }
    std::vector<Arr<T>> outputs() { return {{"y", this->w->y.data(), XS::size}, {"dx", this->w->dx.data(), XS::size}}; }

    /// Everything directly in double, per (item, group) unit of M elements with x̂ = (x - mean)·rstd:
    ///   y = x̂·w + b;  dx = rstd·(g - mean(g) - x̂·mean(g·x̂)) with g = dy·w;
    ///   dw[c] = Σ dy·x̂, db[c] = Σ dy over every element of channel c.
    double naive_check() {
        constexpr int len = C / Groups;
        constexpr double M = double(Rows) * len;
        auto& w = *this->w;
        const auto& ly = this->layer;
        const T *wt = ly.weight.value_ptr, *b = ly.bias.value_ptr;
        const std::string name = this->kind + " " + this->config;
        Samples y{name + " y vs naive"}, dx{name + " dx vs naive"}, dw{name + " dweight vs naive"},
            db{name + " dbias vs naive"};
        std::vector<double> sw(C, 0.0), sb(C, 0.0);
        for (int it = 0; it < items; ++it)
            for (int g = 0; g < Groups; ++g) {
                const std::size_t base = std::size_t(it) * Rows * C;
                auto at = [&](int r, int c) { return base + std::size_t(r) * C + g * len + c; };
                double mean = 0, var = 0, mg = 0, mgx = 0;
                for (int r = 0; r < Rows; ++r)
                    for (int c = 0; c < len; ++c) mean += w.x[at(r, c)];
                mean /= M;
                for (int r = 0; r < Rows; ++r)
                    for (int c = 0; c < len; ++c) var += (w.x[at(r, c)] - mean) * (w.x[at(r, c)] - mean);
                const double rstd = 1 / std::sqrt(var / M + double(ly.eps));
                auto xh = [&](int r, int c) { return (w.x[at(r, c)] - mean) * rstd; };
                for (int r = 0; r < Rows; ++r)
                    for (int c = 0; c < len; ++c) {
                        const double gv = double(w.dy[at(r, c)]) * wt[g * len + c];
                        mg += gv / M;
                        mgx += gv * xh(r, c) / M;
                        sw[g * len + c] += w.dy[at(r, c)] * xh(r, c);
                        sb[g * len + c] += w.dy[at(r, c)];
                        y.add(w.y[at(r, c)], xh(r, c) * wt[g * len + c] + b[g * len + c]);
                    }
                for (int r = 0; r < Rows; ++r)
                    for (int c = 0; c < len; ++c)
                        dx.add(w.dx[at(r, c)], rstd * (double(w.dy[at(r, c)]) * wt[g * len + c] - mg - xh(r, c) * mgx));
            }
        for (int c = 0; c < C; ++c) {
            dw.add(ly.weight.grad_ptr[c], sw[c]);
            db.add(ly.bias.grad_ptr[c], sb[c]);
        }
        return std::max({y.check(kTolNaive), dx.check(kTolNaive), dw.check(kTolNaive), db.check(kTolNaive)});
    }
};

template <class T, int A, int B, int D>
struct LayerNormCase : NormCase<T, LayerNorm<T, D>, Shape<A, B, D>, 1, 1> {
    LayerNormCase() : NormCase<T, LayerNorm<T, D>, Shape<A, B, D>, 1, 1>("LayerNorm", fmt("[%d, %d, %d]", A, B, D)) {}
};
template <class T, int N, int H, int C, int G>
struct GroupNormCase : NormCase<T, GroupNorm<T, C, G>, Shape<N, H, H, C>, H * H, G> {
    GroupNormCase()
        : NormCase<T, GroupNorm<T, C, G>, Shape<N, H, H, C>, H * H, G>(
              "GroupNorm", fmt("[%d, %d, %d, %d], %d groups", N, H, H, C, G)) {}
};

// ---------------------------------------------------------------------------------------------
// The driver: check a case (float against naive, float against double), then hand it over for timing.

template <class T>
void fill(std::vector<Arr<T>> arrays, Rng& rng) {
    for (auto& a : arrays)
        for (std::size_t i = 0; i < a.n; ++i) a.p[i] = T(rng.normal());
}

/// Builds C<float, P...>, checks it as described at the top of this file, and returns it.
template <template <class, int...> class C, int... P>
std::unique_ptr<Case> prepare() {
    auto f = std::make_unique<C<float, P...>>();
    auto d = std::make_unique<C<double, P...>>();
    Rng rng(2024);
    fill(f->inputs(), rng);
    // Jitter the parameters (norm weights start at exactly one, biases at zero), then give the
    // double layer the same float values, parameter by parameter (the flat layouts pad differently).
    const auto& fi = f->store.infos();
    const auto& di = d->store.infos();
    for (const auto& info : fi)
        for (std::size_t i = 0; i < info.size; ++i) f->store.values()[info.offset + i] += float(0.05 * rng.normal());
    for (std::size_t k = 0; k < fi.size(); ++k)
        std::copy_n(f->store.values() + fi[k].offset, fi[k].size, d->store.values() + di[k].offset);
    {
        auto fa = f->inputs();
        auto da = d->inputs();
        for (std::size_t k = 0; k < fa.size(); ++k) std::copy_n(fa[k].p, fa[k].n, da[k].p);
    }
    f->forward();
    f->backward();
    d->forward();
    d->backward();

    const double naive = f->naive_check();
    // Every float result beside its double twin: outputs, input gradients, parameter gradients.
    struct Pair {
        std::string name;
        const float* got;
        const double* want;
        std::size_t n;
    };
    std::vector<Pair> pairs;
    auto fo = f->outputs();
    auto dout = d->outputs();
    for (std::size_t k = 0; k < fo.size(); ++k) pairs.push_back({fo[k].name, fo[k].p, dout[k].p, fo[k].n});
    for (std::size_t k = 0; k < fi.size(); ++k)
        pairs.push_back(
            {"grad " + fi[k].name, f->store.grads() + fi[k].offset, d->store.grads() + di[k].offset, fi[k].size});
    // An array far smaller than the case's largest (the key bias gradient of attention is zero up
    // to rounding: softmax ignores a shift shared by a row) is judged on 1e-2 of that largest.
    double top = 0;
    for (const auto& p : pairs)
        for (std::size_t i = 0; i < p.n; ++i) top = std::max(top, std::abs(p.want[i]));
    double worst = 0;
    std::string worst_name;
    for (const auto& p : pairs) {
        const double e = check_close(f->kind + " " + f->config + " " + p.name + " float vs double", p.n, p.got, p.want,
                                     kTolDouble, 1e-2 * top);
        if (e >= worst) worst = e, worst_name = p.name;
    }
    f->checks =
        fmt("vs naive (%s) %.1e, float vs double %.1e (worst: %s)", f->naive_scope, naive, worst, worst_name.c_str());
    return f;
}

// ---------------------------------------------------------------------------------------------
// References on the same thread count.

/// C[n, n] = A · B through diffuse::gemm (Eigen, threaded by itself). FLOPs = 2·n³.
struct Sgemm {
    int n;
    std::vector<float> a, b, c;
    explicit Sgemm(int n_) : n(n_), a(std::size_t(n) * n), b(a.size()), c(a.size()) {
        Rng rng(3);
        for (auto& v : a) v = float(rng.normal());
        for (auto& v : b) v = float(rng.normal());
    }
    void run() { gemm<Trans::N, Trans::N>(n, n, n, a.data(), b.data(), c.data(), Accumulate::no); }
    double flops() const { return 2.0 * n * n * n; }
    /// 64 entries against double dot products.
    void check() {
        run();
        Rng rng(4);
        std::vector<double> want;
        std::vector<float> got;
        for (int s = 0; s < 64; ++s) {
            const int i = int(rng.below(n)), j = int(rng.below(n));
            double v = 0;
            for (int k = 0; k < n; ++k) v += double(a[std::size_t(i) * n + k]) * b[std::size_t(k) * n + j];
            want.push_back(v);
            got.push_back(c[std::size_t(i) * n + j]);
        }
        check_close("SGEMM vs double dot products", want.size(), got.data(), want.data(), 1e-5);
    }
};

/// y = a·x + b over n floats, split in blocks across threads: the streaming ceiling for the norms.
/// Bytes = 2 · 4 · n.
struct Stream {
    std::size_t n;
    std::vector<float> x, y;
    explicit Stream(std::size_t n_) : n(n_), x(n), y(n) {
        Rng rng(5);
        for (auto& v : x) v = float(rng.normal());
    }
    void run() {
        constexpr std::size_t block = 1 << 14;
        parallel_for(int((n + block - 1) / block), [&](int i) {
            const std::size_t b = std::size_t(i) * block, len = std::min(block, n - b);
            simd::map(len, x.data() + b, y.data() + b, [](auto v) { return v * 1.5f + 0.25f; });
        });
    }
    double bytes() const { return 2.0 * sizeof(float) * n; }
    void check() {
        run();
        std::vector<double> want(n);
        for (std::size_t i = 0; i < n; ++i) want[i] = 1.5 * x[i] + 0.25;
        check_close("stream y = a*x + b", n, y.data(), want.data(), 1e-6);
    }
};

/// Registers `name`, timing f, with a rate counter of `work` per call (FLOP/s, or B/s).
template <class F>
void add(const std::string& name, const char* counter, double work, F f) {
    benchmark::RegisterBenchmark(name.c_str(),
                                 [=](benchmark::State& st) {
                                     for (auto _ : st) f();
                                     st.counters[counter] = per_second(work);
                                 })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    if (!init_benchmark(argc, argv).empty()) {
        std::fprintf(stderr, "bench_layers: takes only --benchmark_* flags\n");
        return 2;
    }
    std::printf(
        "bench_layers: %d thread(s), float, SIMD width %zu\n\nChecks (scaled error: max |err| / max |reference|):\n",
        num_threads(), simd::width<float>);

    Sgemm sgemm(1024);
    sgemm.check();
    FmaPeak peak;
    peak.check();
    Stream stream(std::size_t(1) << 20);
    stream.check();
    std::printf("  references: SGEMM 1024^3, FMA loop and stream loop ok\n");

    std::vector<std::unique_ptr<Case>> cases;
    // Conv2d, batch 32: 3x3 at 32/64/128 channels on 16x16 and 8x8 maps, a strided 3x3, a 1x1.
    cases.push_back(prepare<ConvCase, 32, 16, 32, 32, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 16, 64, 64, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 16, 128, 128, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 8, 32, 32, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 8, 64, 64, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 8, 128, 128, 3, 1>());
    cases.push_back(prepare<ConvCase, 32, 16, 64, 64, 3, 2>());
    cases.push_back(prepare<ConvCase, 32, 16, 128, 64, 1, 1>());
    // Linear: token MLP up and down (32 × 256 tokens), a narrow one, a time-embedding MLP at batch 32.
    cases.push_back(prepare<LinearCase, 8192, 128, 512>());
    cases.push_back(prepare<LinearCase, 8192, 512, 128>());
    cases.push_back(prepare<LinearCase, 2048, 64, 64>());
    cases.push_back(prepare<LinearCase, 32, 256, 1024>());
    // MultiHeadAttention: self over 64 (8x8 map) and 256 (16x16) tokens, cross to 16 text tokens.
    cases.push_back(prepare<AttentionCase, 32, 64, 64, 64, 4, 64, 1>());
    cases.push_back(prepare<AttentionCase, 32, 64, 64, 128, 4, 128, 1>());
    cases.push_back(prepare<AttentionCase, 8, 256, 256, 64, 4, 64, 1>());
    cases.push_back(prepare<AttentionCase, 8, 256, 256, 128, 4, 128, 1>());
    cases.push_back(prepare<AttentionCase, 8, 256, 16, 64, 4, 128, 0>());
    cases.push_back(prepare<AttentionCase, 32, 64, 16, 128, 4, 128, 0>());
    // Norms.
    cases.push_back(prepare<LayerNormCase, 32, 256, 128>());
    cases.push_back(prepare<LayerNormCase, 32, 64, 64>());
    cases.push_back(prepare<GroupNormCase, 32, 16, 128, 32>());
    cases.push_back(prepare<GroupNormCase, 32, 16, 64, 32>());
    cases.push_back(prepare<GroupNormCase, 32, 8, 128, 32>());
    for (const auto& c : cases) std::printf("  %s %s: %s\n", c->kind.c_str(), c->config.c_str(), c->checks.c_str());
    std::fflush(stdout);

    add("SGEMM 1024^3 (diffuse::gemm)", "FLOP/s", sgemm.flops(), [&] { sgemm.run(); });
    add(fmt("FP32 FMA loop (peak, %d chains x %zu lanes)", FmaPeak::kChains, simd::width<float>), "FLOP/s",
        peak.flops(), [&] { peak.run(); });
    add("stream y = a*x + b [1048576]", "B/s", stream.bytes(), [&] { stream.run(); });
    for (auto& c : cases) {
        Case* p = c.get();
        const char* counter = p->memory_bound ? "B/s" : "FLOP/s";
        add(p->kind + " " + p->config + " fwd", counter, p->fwd_work, [p] { p->forward(); });
        add(p->kind + " " + p->config + " fwd+bwd", counter, p->fb_work, [p] {
            p->forward();
            p->backward();
        });
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
