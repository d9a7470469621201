// A denoiser of our own from diffuse's public headers (through FetchContent): an MLP with LayerNorm
// and GELU that learns to remove noise from points on a line, trained briefly, then asked once.
#include <cmath>
#include <cstdio>
#include <diffuse/diffuse.hpp>

using namespace diffuse;

constexpr int N = 32, D = 8, H = 32;  // batch, point dimension, hidden width

struct Denoiser {
    Linear<float, D, H> in;
    LayerNorm<float, H> norm;
    GELU<float> act;
    Linear<float, H, D> out;

    template <class V>
    constexpr void visit(V& v) {
        v("in", in);
        v("norm", norm);
        v("out", out);
    }
};

struct Work {
    Tensor<float, N, D> clean, noisy, pred, dpred;
    Tensor<float, N, H> h, dh, n, dn, a, da;
    LayerNorm<float, H>::Cache<Shape<N, H>> norm_cache;
};

void draw(Work& w, Rng& rng) {  // clean points t·(1, 2, ..., D)/D on a line, plus noise
    fill_normal(w.noisy, rng);
    for (int i = 0; i < N; ++i) {
        const float t = float(rng.normal());
        for (int d = 0; d < D; ++d) {
            w.clean(i, d) = t * float(d + 1) / D;
            w.noisy(i, d) = w.clean(i, d) + 0.3f * w.noisy(i, d);
        }
    }
}

void forward(const Denoiser& m, Work& w) {
    m.in.forward(w.noisy, w.h);
    m.norm.forward(w.h, w.n, w.norm_cache);
    m.act.forward(w.n, w.a);
    m.out.forward(w.a, w.pred);
}

int main() {
    Denoiser model;
    ParamStore<float> params(model, /*seed=*/5);
    Adam<float> adam(params, {.lr = 3e-3});
    auto w = make<Work>();
    Rng rng(6);
    float first = 0, loss = 0;
    for (int step = 0; step < 150; ++step) {
        draw(*w, rng);
        forward(model, *w);
        params.zero_grad();
        w->dpred.fill(0), w->da.fill(0), w->dn.fill(0), w->dh.fill(0);
        loss = mse_loss(w->pred, w->clean, w->dpred);
        model.out.backward(w->a, w->pred, w->dpred, w->da);
        model.act.backward(w->n, w->a, w->da, w->dn);
        model.norm.backward(w->h, w->n, w->norm_cache, w->dn, w->dh);
        model.in.backward(w->noisy, w->h, w->dh, View<float, N, D>());
        adam.step();
        if (step == 0) first = loss;
    }
    draw(*w, rng);
    forward(model, *w);
    double err = 0, noise = 0;  // on fresh points: the model's error against the noise it was given
    for (int i = 0; i < N; ++i)
        for (int d = 0; d < D; ++d) {
            err += std::pow(w->pred(i, d) - w->clean(i, d), 2);
            noise += std::pow(w->noisy(i, d) - w->clean(i, d), 2);
        }
    std::printf("Denoiser: loss %.3f -> %.3f; fresh points: error %.3f against noise %.3f\n", first, loss,
                err / (N * D), noise / (N * D));
    return loss < first / 2 && err < noise ? 0 : 1;
}
