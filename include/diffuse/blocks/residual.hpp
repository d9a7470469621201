// ResidualBlock: the pre-activation residual block of the VAE and the UNet,
// [N, H, W, Cin] -> [N, H, W, Cout]:
//
//   h = conv1(SiLU(norm1(x)))                      conv 3×3, Cin -> Cout
//   h += time_proj(SiLU(temb))  (TimeDim > 0)       temb [N, TimeDim], broadcast over H, W
//   y = conv2(SiLU(norm2(h))) + skip(x)             conv 3×3; skip = x, or a 1×1 conv when Cin != Cout
//
// The seed's VAE_ResidualBlock dropped the residual when the channel counts were equal; we keep it.
// The norm is a tag: norm::Layer (the seed's Keras LayerNormalization over channels) or
// norm::Group<G> (Stable Diffusion's GroupNorm); the group count must divide Cin and Cout.
//
// The Cache holds every intermediate backward reads, and backward's gradient scratch (two Cin-wide
// and two Cout-wide maps, ping-ponged), so a block allocates nothing per step.
#ifndef DIFFUSE_BLOCKS_RESIDUAL_HPP
#define DIFFUSE_BLOCKS_RESIDUAL_HPP

#include <cstddef>
#include <type_traits>
#include <utility>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/norm.hpp"

namespace diffuse {

template <class T, int Cin, int Cout, class Norm, int TimeDim = 0>
struct ResidualBlock {
    static_assert(Cin > 0 && Cout > 0 && TimeDim >= 0,
                  "ResidualBlock: channel counts must be positive and TimeDim non-negative");
    static_assert(Cin % Norm::groups == 0 && Cout % Norm::groups == 0,
                  "ResidualBlock: the GroupNorm group count must divide both Cin and Cout");
    static constexpr int in_channels = Cin, out_channels = Cout, time_dim = TimeDim;
    static constexpr bool has_time = TimeDim > 0;
    static constexpr bool projects_skip = Cin != Cout;

    using Norm1 = typename Norm::template layer<T, Cin>;
    using Norm2 = typename Norm::template layer<T, Cout>;
    using Conv1 = Conv2d<T, Cin, Cout, 3>;
    using Conv2 = Conv2d<T, Cout, Cout, 3>;
    using TimeProj = std::conditional_t<has_time, Linear<T, (has_time ? TimeDim : 1), Cout>, Absent>;
    using Skip = std::conditional_t<projects_skip, Conv2d<T, Cin, Cout, 1>, Absent>;

    Norm1 norm1;
    Conv1 conv1;
    [[no_unique_address]] TimeProj time_proj;
    Norm2 norm2;
    Conv2 conv2;
    [[no_unique_address]] Skip skip;

    template <class V>
    constexpr void visit(V& v) {
        v("norm1", norm1);
        v("conv1", conv1);
        if constexpr (has_time) v("time_proj", time_proj);
        v("norm2", norm2);
        v("conv2", conv2);
        if constexpr (projects_skip) v("skip", skip);
    }

    template <class XShape>
    using output_shape = ReplaceLast<XShape, Cout>;

    /// Time-embedding intermediates: SiLU(temb) [N, TimeDim], its projection [N, Cout], and their gradients.
    template <int N>
    struct TimeCache {
        Tensor<T, N, (has_time ? TimeDim : 1)> act, dact;
        Tensor<T, N, Cout> proj, dproj;
    };

    template <class XShape>
    struct Cache {
        using In = XShape;
        using Out = ReplaceLast<XShape, Cout>;
        TensorOf<T, In> h1, a1;       // norm1(x), SiLU of it          [N, H, W, Cin]
        TensorOf<T, Out> c1, h2, a2;  // conv1 (+ time), norm2, SiLU   [N, H, W, Cout]
        typename Norm1::template Cache<In> norm1;
        typename Conv1::template Cache<In> conv1;
        typename Norm2::template Cache<Out> norm2;
        typename Conv2::template Cache<Out> conv2;
        [[no_unique_address]] std::conditional_t<has_time, TimeCache<XShape::first>, Absent> time;
        // Backward scratch (forward borrows dout_a for the projected skip).
        TensorOf<T, Out> dout_a, dout_b;  // [N, H, W, Cout]
        TensorOf<T, In> din_a, din_b;     // [N, H, W, Cin]
    };

    /// Without a time embedding (TimeDim == 0).
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& cache) const {
        static_assert(!has_time, "ResidualBlock: this block takes a time embedding: forward(x, temb, y, cache)");
        check<X, Y>();
        run_forward(cview(x), static_cast<const T*>(nullptr), mview(y), cache);
    }
    /// With a time embedding temb [N, TimeDim].
    template <Shaped X, Shaped E, Shaped Y>
    void forward(const X& x, const E& temb, Y&& y, Cache<shape_of<X>>& cache) const {
        check<X, Y>();
        check_time<X, E>();
        run_forward(cview(x), temb.data(), mview(y), cache);
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, Cache<shape_of<X>>& cache, const DY& dy, DX&& dx) const {
        static_assert(!has_time,
                      "ResidualBlock: this block takes a time embedding: backward(x, temb, y, cache, dy, dx, dtemb)");
        check<X, Y>();
        check_grads<X, Y, DY, DX>();
        run_backward(cview(x), static_cast<const T*>(nullptr), cview(y), cache, cview(dy),
                     detail::as_view<shape_of<X>>(dx), static_cast<T*>(nullptr));
    }
    template <Shaped X, Shaped E, Shaped Y, Shaped DY, Shaped DX, Shaped DE>
    void backward(const X& x, const E& temb, const Y& y, Cache<shape_of<X>>& cache, const DY& dy, DX&& dx,
                  DE&& dtemb) const {
        check<X, Y>();
        check_time<X, E>();
        check_grads<X, Y, DY, DX>();
        static_assert(same_shape<shape_of<DE>, shape_of<E>>,
                      "ResidualBlock: the time-embedding gradient must have temb's shape");
        run_backward(cview(x), temb.data(), cview(y), cache, cview(dy), detail::as_view<shape_of<X>>(dx), dtemb.data());
    }

private:
    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank == 4, "ResidualBlock: the input must be an image batch [N, H, W, Cin]");
        static_assert(shape_of<X>::last == Cin, "ResidualBlock: input channel count must equal Cin");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<X>>>,
                      "ResidualBlock: the output must be [N, H, W, Cout]");
    }
    template <class X, class E>
    static constexpr void check_time() {
        static_assert(has_time, "ResidualBlock: this block has no time embedding (TimeDim == 0)");
        static_assert(same_shape<shape_of<E>, Shape<shape_of<X>::first, TimeDim>>,
                      "ResidualBlock: the time embedding must be [N, TimeDim]");
    }
    template <class X, class Y, class DY, class DX>
    static constexpr void check_grads() {
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "ResidualBlock: gradients must have the shapes of their values");
    }

    template <class XS>
    static constexpr int pixels = XS::template dim<1>* XS::template dim<2>;

    // The bodies take views only (whatever the caller passed), so each block shape compiles them once.
    template <class X, class Y, class C>
    void run_forward(X x, const T* temb, Y y, C& c) const {
        using XS = shape_of<X>;
        constexpr int N = XS::first;
        norm1.template forward_activated<act::SiLU>(x, c.h1, c.a1, c.norm1);
        conv1.forward(c.a1, c.c1, c.conv1);
        if constexpr (has_time) {
            SiLU<T>{}.forward(View<const T, N, TimeDim>(temb), c.time.act);
            time_proj.forward(c.time.act, c.time.proj);
            // c1[n, p, :] += proj[n, :] for every pixel p
            parallel_for_light(N, std::size_t(N) * pixels<XS> * Cout, [&](int n) {
                for (int p = 0; p < pixels<XS>; ++p)
                    simd::add_to(std::size_t(Cout), c.time.proj.data() + std::size_t(n) * Cout,
                                 c.c1.data() + (std::size_t(n) * pixels<XS> + p) * Cout);
            });
        }
        norm2.template forward_activated<act::SiLU>(c.c1, c.h2, c.a2, c.norm2);
        conv2.forward(c.a2, y, c.conv2);
        if constexpr (projects_skip) {
            skip.forward(x, c.dout_a);
            add(y, c.dout_a, y);
        } else {
            add(y, x, y);
        }
    }

    template <class X, class Y, class C, class DY, class DX>
    void run_backward(X x, const T* temb, Y y, C& c, DY dy, DX dx, T* dtemb) const {
        using XS = shape_of<X>;
        constexpr int N = XS::first;
        // Skip path.
        if constexpr (projects_skip) skip.backward(x, y, dy, dx);
        else if (dx.data()) add_backward(dy, dx, ViewOf<T, shape_of<X>>());
        // Main path, from the output back to x: scratch maps are zeroed before each accumulation.
        c.dout_a.fill(T(0));
        conv2.backward(c.a2, y, c.conv2, dy, c.dout_a);  // d a2
        // d h2 into dout_b, then d c1 written over d a2 (an item's d a2 is read before its d c1 is written)
        norm2.template backward_activated<act::SiLU>(c.c1, c.h2, c.norm2, c.dout_a, c.dout_b, c.dout_a, Accumulate::no);
        if constexpr (has_time) {
            // d proj[n, :] = Σ_p d c1[n, p, :], pixels summed in order
            parallel_for_light(N, std::size_t(N) * pixels<XS> * Cout, [&](int n) {
                T* dp = c.time.dproj.data() + std::size_t(n) * Cout;
                std::fill(dp, dp + Cout, T(0));
                for (int p = 0; p < pixels<XS>; ++p)
                    simd::add_to(std::size_t(Cout), c.dout_a.data() + (std::size_t(n) * pixels<XS> + p) * Cout, dp);
            });
            c.time.dact.fill(T(0));
            time_proj.backward(c.time.act, c.time.proj, c.time.dproj, c.time.dact);
            SiLU<T>{}.backward(View<const T, N, TimeDim>(temb), c.time.act, c.time.dact, View<T, N, TimeDim>(dtemb));
        }
        c.din_a.fill(T(0));
        conv1.backward(c.a1, c.c1, c.conv1, c.dout_a, c.din_a);  // d a1
        // d h1 into din_b, then into d x (null dx: parameters only)
        norm1.template backward_activated<act::SiLU>(x, c.h1, c.norm1, c.din_a, c.din_b, dx);
    }
};

}  // namespace diffuse

#endif
