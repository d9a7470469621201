#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

/// Gradient check of Conv2d on an [N, H, W, Cin] input whose output must be [N, Ho, Wo, Cout]
/// (the expected sizes are written out by hand, from PyTorch's formula).
template <int Cin, int Cout, int K, int S, Padding P, int N, int H, int W, int Ho, int Wo, int Slots = 0>
void check_conv() {
    using L = Conv2d<double, Cin, Cout, K, S, P>;
    using XS = Shape<N, H, W, Cin>;
    static_assert(same_shape<typename L::template output_shape<XS>, Shape<N, Ho, Wo, Cout>>);
    using Cache = std::conditional_t<Slots == 0, typename L::template Cache<XS>, typename L::template Cache<XS, Slots>>;
    L layer;
    ParamStore<double> store(layer, 7);
    Rng rng(1);
    auto x = make<Tensor<double, N, H, W, Cin>>(), dx = make<Tensor<double, N, H, W, Cin>>();
    auto y = make<Tensor<double, N, Ho, Wo, Cout>>();
    auto cache = make<Cache>();
    if constexpr (requires { cache->dweight; }) {  // a cache is scratch: nothing may be read before it is written
        std::fill(cache->col.begin(), cache->col.end(), std::numeric_limits<double>::quiet_NaN());
        std::fill(cache->dweight.begin(), cache->dweight.end(), std::numeric_limits<double>::quiet_NaN());
    }
    fill_normal(*x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", *x, *dx));
    auto rep = check_gradients(
        probes, *y, [&] { layer.forward(*x, *y, *cache); }, [&](auto dy) { layer.backward(*x, *y, *cache, dy, *dx); });
    INFO("Conv2d<", Cin, ", ", Cout, ", K=", K, ", S=", S, std::string(P == Padding::same ? ", same" : ", valid"),
         "> on [", N, ", ", H, ", ", W, "]: ", rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

/// Direct convolution, PyTorch's definition: zero padding pad before, taps falling outside skipped.
template <class L, int N, int H, int W, int Cin, int Ho, int Wo, int Cout>
void naive_conv(const L& layer, const Tensor<float, N, H, W, Cin>& x, Tensor<float, N, Ho, Wo, Cout>& y, int pad) {
    constexpr int K = L::kernel_size, S = L::stride;
    auto wt = layer.weight.value();
    for (int n = 0; n < N; ++n)
        for (int oh = 0; oh < Ho; ++oh)
            for (int ow = 0; ow < Wo; ++ow)
                for (int o = 0; o < Cout; ++o) {
                    double acc = layer.bias.value()[o];
                    for (int kh = 0; kh < K; ++kh)
                        for (int kw = 0; kw < K; ++kw) {
                            const int ih = oh * S - pad + kh, iw = ow * S - pad + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            for (int c = 0; c < Cin; ++c) acc += double(wt(o, kh, kw, c)) * x(n, ih, iw, c);
                        }
                    y(n, oh, ow, o) = float(acc);
                }
}

template <int Cin, int Cout, int K, int S, Padding P, int N, int H, int W, int Ho, int Wo>
void check_forward_float(int pad) {
    using L = Conv2d<float, Cin, Cout, K, S, P>;
    using XS = Shape<N, H, W, Cin>;
    L layer;
    ParamStore<float> store(layer, 11);
    Rng rng(5);
    auto x = make<Tensor<float, N, H, W, Cin>>();
    auto y = make<Tensor<float, N, Ho, Wo, Cout>>(), want = make<Tensor<float, N, Ho, Wo, Cout>>();
    auto cache = make<typename L::template Cache<XS>>();
    fill_normal(*x, rng);
    layer.forward(*x, *y, *cache);
    naive_conv(layer, *x, *want, pad);
    float worst = 0;
    for (std::size_t i = 0; i < y->size; ++i) worst = std::max(worst, std::abs((*y)[i] - (*want)[i]));
    INFO("K=", K, " S=", S, " max abs difference ", worst);
    CHECK(worst < 1e-5f);
}

}  // namespace

TEST_CASE("Conv2d: output shapes follow PyTorch's formula") {
    using S33 = Conv2d<float, 3, 8, 3>;
    static_assert(same_shape<S33::output_shape<Shape<2, 32, 32, 3>>, Shape<2, 32, 32, 8>>);
    using D = Conv2d<float, 8, 8, 3, 2>;  // the downsampler: ceil(H / 2)
    static_assert(same_shape<D::output_shape<Shape<2, 32, 32, 8>>, Shape<2, 16, 16, 8>>);
    static_assert(same_shape<D::output_shape<Shape<1, 7, 5, 8>>, Shape<1, 4, 3, 8>>);
    using V = Conv2d<float, 1, 4, 5, 1, Padding::valid>;
    static_assert(same_shape<V::output_shape<Shape<1, 28, 28, 1>>, Shape<1, 24, 24, 4>>);
    using V2 = Conv2d<float, 1, 4, 3, 2, Padding::valid>;
    static_assert(same_shape<V2::output_shape<Shape<1, 8, 9, 1>>, Shape<1, 3, 4, 4>>);
    CHECK(true);
}

TEST_CASE("Conv2d: gradients, stride 1, same padding, several kernel sizes") {
    check_conv<2, 3, 3, 1, Padding::same, 2, 5, 4, 5, 4>();
    check_conv<3, 2, 5, 1, Padding::same, 2, 3, 4, 3, 4>();  // kernel larger than the image
    check_conv<2, 3, 2, 1, Padding::same, 2, 4, 5, 4, 5>();  // even kernel: extra padding after
    check_conv<4, 4, 4, 1, Padding::same, 1, 5, 5, 5, 5>();
    // rows narrower than K − 1 (every window leaves the row) and 1 pixel wide
    check_conv<2, 3, 5, 1, Padding::same, 2, 3, 2, 3, 2>();
    check_conv<2, 2, 3, 1, Padding::same, 1, 4, 1, 4, 1>();
    // 8×8 and up: dx as dy convolved with the weights packed in flipped order (implicit_dx)
    check_conv<2, 3, 3, 1, Padding::same, 2, 8, 9, 8, 9>();
    check_conv<3, 2, 5, 1, Padding::same, 1, 9, 8, 9, 8>();
}

TEST_CASE("Conv2d: gradients, stride 2 (the downsampler)") {
    check_conv<2, 3, 3, 2, Padding::same, 3, 6, 5, 3, 3>();
    check_conv<3, 2, 4, 2, Padding::same, 2, 5, 6, 3, 3>();
    check_conv<1, 2, 3, 3, Padding::same, 2, 7, 7, 3, 3>();
}

TEST_CASE("Conv2d: gradients, valid padding") {
    check_conv<2, 3, 3, 1, Padding::valid, 2, 5, 6, 3, 4>();
    check_conv<3, 2, 3, 2, Padding::valid, 3, 7, 6, 3, 2>();
    check_conv<1, 2, 2, 1, Padding::valid, 2, 3, 3, 2, 2>();
}

TEST_CASE("Conv2d: gradients, 1x1 (plain GEMM) and 1x1 strided") {
    static_assert(Conv2d<double, 3, 4, 1>::pointwise && !Conv2d<double, 3, 4, 1, 2>::pointwise);
    check_conv<3, 4, 1, 1, Padding::same, 2, 3, 4, 3, 4>();
    check_conv<4, 2, 1, 1, Padding::valid, 1, 2, 2, 2, 2>();
    check_conv<3, 4, 1, 2, Padding::same, 2, 5, 4, 3, 2>();
}

TEST_CASE("Conv2d: gradients with one slot, and with more slots than images") {
    check_conv<2, 3, 3, 1, Padding::same, 3, 4, 4, 4, 4, 1>();
    check_conv<2, 3, 3, 2, Padding::same, 2, 4, 4, 2, 2, 5>();
}

TEST_CASE("Conv2d: gradients when small images are grouped into one GEMM, the last group short") {
    // 3×3 outputs: 9 rows an image, so a slot's images (3 and 4 of 7) form one group each
    static_assert(Conv2d<double, 2, 3, 3>::Cache<Shape<7, 3, 3, 2>, 2>::images == 4);
    check_conv<2, 3, 3, 1, Padding::same, 7, 3, 3, 3, 3, 2>();
    check_conv<2, 3, 3, 2, Padding::same, 9, 4, 4, 2, 2, 2>();
}

TEST_CASE("Conv2d: forward matches a direct convolution, in float") {
    check_forward_float<3, 5, 3, 1, Padding::same, 2, 7, 6, 7, 6>(1);
    check_forward_float<4, 3, 3, 2, Padding::same, 3, 8, 7, 4, 4>(1);
    check_forward_float<2, 4, 5, 1, Padding::valid, 2, 9, 8, 5, 4>(0);
    check_forward_float<2, 3, 4, 1, Padding::same, 1, 6, 6, 6, 6>(1);  // even K: pad 1 before, 2 after
    check_forward_float<6, 2, 1, 1, Padding::same, 2, 3, 3, 3, 3>(0);
    // stride 1 "same" (the implicit GEMM, bias stored by its first product): 2 rows under a 5-row
    // kernel (kernel rows 0 and 4 reach no image row, so the first product is row 1's), and 3×3 images
    // grouped 3 to a GEMM
    check_forward_float<2, 3, 5, 1, Padding::same, 2, 2, 6, 2, 6>(2);
    check_forward_float<3, 4, 3, 1, Padding::same, 9, 3, 3, 3, 3>(1);
}

TEST_CASE("Conv2d: a 1x1 conv is Linear over every pixel") {
    Conv2d<float, 5, 3, 1> conv;
    Linear<float, 5, 3> lin;
    ParamStore<float> cs(conv, 9), ls(lin, 9);
    // Same seed, same initializer, same layout: [3, 1, 1, 5] is [3, 5].
    REQUIRE(std::equal(cs.values(), cs.values() + cs.size(), ls.values()));
    Rng rng(3);
    Tensor<float, 2, 3, 4, 5> x, dxc, dxl;
    Tensor<float, 2, 3, 4, 3> yc, yl, dy;
    fill_normal(x, rng);
    fill_normal(dy, rng);
    dxc.fill(0);
    dxl.fill(0);
    conv.forward(x, yc);
    lin.forward(x, yl);
    CHECK(std::equal(yc.begin(), yc.end(), yl.begin()));
    cs.zero_grad();
    ls.zero_grad();
    conv.backward(x, yc, dy, dxc);
    lin.backward(x, yl, dy, dxl);
    CHECK(std::equal(dxc.begin(), dxc.end(), dxl.begin()));
    CHECK(std::equal(cs.grads(), cs.grads() + cs.size(), ls.grads()));
}

TEST_CASE("Conv2d: the column buffer holds a group of images, never the batch") {
    using L = Conv2d<float, 16, 32, 3>;
    using Small = L::Cache<Shape<4, 16, 16, 16>>;
    using Big = L::Cache<Shape<256, 16, 16, 16>>;
    static_assert(Small::slots == conv_default_slots && Big::slots == conv_default_slots);
    static_assert(Small::images == 1 && Big::images == 1);  // 256 rows an image: one GEMM each
    CHECK(sizeof(Big) == sizeof(Small));
    // read in place: a slot holds the zero window and each image row's two edge windows (K·C values)
    // of x (16 channels), for the weight gradient (the forward and dx read x and dy in place), and the
    // weight-gradient partial
    constexpr int windows = 3 * 16 * (1 + 16 * 2), dweight = 32 * 9 * 16;
    CHECK(sizeof(Small) == conv_default_slots * (windows + dweight) * sizeof(float));
    CHECK(sizeof(L::Cache<Shape<1, 16, 16, 16>>) == (windows + dweight) * sizeof(float));
    // 4×4 images (16 rows) go 16 to a GEMM, however large the batch; a slot holds the group's edge
    // windows (16 images of 4 rows, two each) and no columns: the input gradient reads dy in place too
    using Group = L::Cache<Shape<64, 4, 4, 16>>;
    using Huge = L::Cache<Shape<1024, 4, 4, 16>>;
    static_assert(Group::images == kConvGemmRows / 16 && Huge::images == Group::images);
    CHECK(sizeof(Huge) == sizeof(Group));
    CHECK(sizeof(Group) == conv_default_slots * (3 * 16 * (1 + 16 * 4 * 2) + dweight) * sizeof(float));
    // a strided conv builds the columns of its group: 8×8 outputs, 4 images to a GEMM
    using Strided = Conv2d<float, 16, 32, 3, 2>::Cache<Shape<64, 16, 16, 16>>;
    static_assert(Strided::images == 4);
    CHECK(sizeof(Strided) == conv_default_slots * (4 * 64 * 9 * 16 + dweight) * sizeof(float));
}

TEST_CASE("Conv2d: results are bitwise the same for any thread count") {
    using L = Conv2d<float, 3, 4, 3, 2>;
    using XS = Shape<7, 9, 8, 3>;
    L layer;
    ParamStore<float> store(layer, 5);
    Rng rng(8);
    auto x = make<Tensor<float, 7, 9, 8, 3>>();
    auto y = make<TensorOf<float, L::output_shape<XS>>>(), dy = make<TensorOf<float, L::output_shape<XS>>>();
    auto cache = make<L::Cache<XS>>();
    fill_normal(*x, rng);
    fill_normal(*dy, rng);
    auto run = [&](int threads) {
        omp_set_num_threads(threads);
        auto dx = make<Tensor<float, 7, 9, 8, 3>>();
        store.zero_grad();
        layer.forward(*x, *y, *cache);
        layer.backward(*x, *y, *cache, *dy, *dx);
        std::vector<float> out(y->begin(), y->end());
        out.insert(out.end(), dx->begin(), dx->end());
        out.insert(out.end(), store.grads(), store.grads() + store.size());
        return out;
    };
    const int saved = omp_get_max_threads();
    const auto one = run(1), two = run(2), three = run(3);
    omp_set_num_threads(saved);
    CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("Conv2d: a null dx skips the input gradient but still accumulates parameter grads") {
    using L = Conv2d<double, 2, 3, 3>;
    using XS = Shape<2, 4, 4, 2>;
    L layer;
    ParamStore<double> store(layer, 1);
    Rng rng(2);
    Tensor<double, 2, 4, 4, 2> x;
    Tensor<double, 2, 4, 4, 3> y, dy;
    L::Cache<XS> cache;
    fill_normal(x, rng);
    fill_normal(dy, rng);
    layer.forward(x, y, cache);
    store.zero_grad();
    layer.backward(x, y, cache, dy, View<double, 2, 4, 4, 2>());
    double s = 0;
    for (std::size_t i = 0; i < store.size(); ++i) s += std::abs(store.grads()[i]);
    CHECK(s > 0);
}

// PyTorch parity. Inputs follow closed formulas (x_i = sin(0.3 i + 0.1), w_j = 0.2 cos(0.7 j) over our
// [Cout, K, K, Cin] layout, b_o = 0.1 o - 0.05, dy_i = cos(0.5 i), all flat channels-last indices);
// each tensor is compared through the checksum Σ_i t_i sin(1.3 i + 0.2). Reference values from
// Debian's python3-torch 1.13 (float64), by this script:
//
//   import math, torch
//   def case(N, H, W, Cin, Cout, K, S, pad):
//       x = torch.tensor([math.sin(0.3*i+0.1) for i in range(N*H*W*Cin)], dtype=torch.float64).reshape(N,H,W,Cin)
//       w = torch.tensor([0.2*math.cos(0.7*j) for j in range(Cout*K*K*Cin)], dtype=torch.float64).reshape(Cout,K,K,Cin)
//       b = torch.tensor([0.1*o-0.05 for o in range(Cout)], dtype=torch.float64)
//       xt = x.permute(0,3,1,2).clone().requires_grad_(); wt = w.permute(0,3,1,2).clone().requires_grad_()
//       bt = b.clone().requires_grad_()
//       y = torch.nn.functional.conv2d(xt, wt, bt, stride=S, padding=pad).permute(0,2,3,1)
//       dy = torch.tensor([math.cos(0.5*i) for i in range(y.numel())], dtype=torch.float64).reshape(y.shape)
//       (y*dy).sum().backward()
//       ck = lambda t: sum(float(v)*math.sin(1.3*i+0.2) for i, v in enumerate(t.reshape(-1)))
//       print(ck(y), ck(xt.grad.permute(0,2,3,1)), ck(wt.grad.permute(0,2,3,1)), ck(bt.grad))
//   case(2,5,6,2,3,3,2,1); case(1,4,5,2,3,4,1,'same'); case(2,7,6,3,2,5,1,0)
namespace {
double checksum(const double* t, std::size_t n) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += t[i] * std::sin(1.3 * double(i) + 0.2);
    return s;
}

template <int N, int H, int W, int Cin, int Cout, int K, int S, Padding P>
void check_torch(double y_ref, double dx_ref, double dw_ref, double db_ref) {
    using L = Conv2d<double, Cin, Cout, K, S, P>;
    using XS = Shape<N, H, W, Cin>;
    using YS = typename L::template output_shape<XS>;
    L layer;
    ParamStore<double> store(layer);
    auto w = layer.weight.value();
    for (std::size_t j = 0; j < w.size; ++j) w[j] = 0.2 * std::cos(0.7 * double(j));
    for (int o = 0; o < Cout; ++o) layer.bias.value()[o] = 0.1 * o - 0.05;
    TensorOf<double, XS> x, dx;
    TensorOf<double, YS> y, dy;
    typename L::template Cache<XS> cache;
    for (std::size_t i = 0; i < x.size; ++i) x[i] = std::sin(0.3 * double(i) + 0.1);
    for (std::size_t i = 0; i < dy.size; ++i) dy[i] = std::cos(0.5 * double(i));
    dx.fill(0);
    store.zero_grad();
    layer.forward(x, y, cache);
    layer.backward(x, y, cache, dy, dx);
    CHECK(checksum(y.data(), y.size) == doctest::Approx(y_ref).epsilon(1e-12));
    CHECK(checksum(dx.data(), dx.size) == doctest::Approx(dx_ref).epsilon(1e-12));
    CHECK(checksum(layer.weight.grad_ptr, w.size) == doctest::Approx(dw_ref).epsilon(1e-12));
    CHECK(checksum(layer.bias.grad_ptr, Cout) == doctest::Approx(db_ref).epsilon(1e-12));
}
}  // namespace

TEST_CASE("Conv2d: forward and backward match PyTorch") {
    // stride 2, padding 1 (our "same" for K=3)
    check_torch<2, 5, 6, 2, 3, 3, 2, Padding::same>(0.6197683714073848, -0.33939042380573764, 1.5478340076400925,
                                                    1.2913978613023076);
    // even kernel, stride 1: PyTorch's padding="same" (1 before, 2 after)
    check_torch<1, 4, 5, 2, 3, 4, 1, Padding::same>(0.18889039588339965, -0.6856802228833465, 0.18316019773892117,
                                                    -0.8553475730515805);
    // valid, 5x5
    check_torch<2, 7, 6, 3, 2, 5, 1, Padding::valid>(0.09641415605924197, 5.680877222346373, 4.139649671912806,
                                                     -0.6402528578349629);
}
