// Losses: each returns the loss value and, given a non-null gradient view, ADDS
// dloss · d(loss)/d(input) into it (dloss is the upstream gradient of the loss, 1 for a loss that
// is minimized alone; pass another value to weight one loss against others).
//
//   mse_loss(pred, target, dpred)            mean over all elements of (pred - target)²;
//                                            dpred += dloss · 2 (pred - target) / n
//   cross_entropy(logits, labels, dlogits)   logits [N, Classes], int labels [N]; mean over the
//                                            batch of logsumexp(row) - row[label] (the max is
//                                            subtracted first, so large logits do not overflow);
//                                            dlogits += dloss · (softmax - onehot) / N
//   cross_entropy(..., weights)              per-sample weights w [N]: mean of w_i · loss_i
//                                            (= PyTorch's (F.cross_entropy(reduction='none') * w).mean(),
//                                            not its per-class `weight`, which divides by Σ w)
//   accuracy(logits, labels)                 fraction of rows whose first largest logit is the label
//
// Sums run sequentially in element / row order, accumulated in double, so the value is
// reproducible; the work is small next to the layers that produce the inputs.
#ifndef DIFFUSE_NN_LOSSES_HPP
#define DIFFUSE_NN_LOSSES_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "diffuse/core/lanes.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

namespace detail {
template <Shaped X>
using value_type_of = typename std::remove_cvref_t<X>::value_type;
}  // namespace detail

/// mean((pred - target)²); dpred += dloss · 2 (pred - target) / n unless dpred is null.
template <Shaped P, Shaped G, Shaped DP>
detail::value_type_of<P> mse_loss(const P& pred, const G& target, DP&& dpred, detail::value_type_of<P> dloss = 1) {
    using T = detail::value_type_of<P>;
    static_assert(same_shape<shape_of<P>, shape_of<G>>, "mse_loss: prediction and target must have the same shape");
    static_assert(same_shape<shape_of<P>, shape_of<DP>>, "mse_loss: the gradient must have the prediction's shape");
    constexpr std::size_t n = shape_of<P>::size;
    // Partial sums over fixed chunks, added in order in double: accurate for large n.
    constexpr std::size_t chunk = 4096;
    const T* p = pred.data();
    const T* t = target.data();
    double total = 0;
    for (std::size_t b = 0; b < n; b += chunk) {
        lanes::Sum<T> s;
        lanes::each<T>(std::min(chunk, n - b), [&](std::size_t i, auto tag) {
            using V = decltype(tag);
            const V d = lanes::load<V>(p + b + i) - lanes::load<V>(t + b + i);
            s.add(d * d);
        });
        total += double(s.total());
    }
    if (T* dp = dpred.data()) {
        const T k = dloss * T(2) / T(n);
        lanes::each<T>(n, [&](std::size_t i, auto tag) {
            using V = decltype(tag);
            lanes::store(dp + i, lanes::load<V>(dp + i) + V(k) * (lanes::load<V>(p + i) - lanes::load<V>(t + i)));
        });
    }
    return T(total / double(n));
}

namespace detail {

template <class L, class Lab>
constexpr void check_classification() {
    static_assert(shape_of<L>::rank == 2, "cross_entropy: logits must be [N, Classes]");
    static_assert(std::is_same_v<value_type_of<Lab>, int>, "cross_entropy: labels must be int");
    static_assert(shape_of<Lab>::rank == 1 && shape_of<Lab>::first == shape_of<L>::first,
                  "cross_entropy: labels must be [N], one per row of logits");
}

template <int Classes>
void check_labels(const int* labels, int n) {
    for (int i = 0; i < n; ++i)
        if (labels[i] < 0 || labels[i] >= Classes)
            throw std::out_of_range("cross_entropy: label " + std::to_string(labels[i]) + " at row " +
                                    std::to_string(i) + " is outside [0, " + std::to_string(Classes) + ")");
}

/// Mean of w_i · (logsumexp(row_i) - row_i[label_i]); w may be null (all ones).
template <int N, int K, class T>
T cross_entropy_rows(const T* x, const int* labels, const T* w, T* dx, T dloss) {
    check_labels<K>(labels, N);
    double total = 0;
    for (int r = 0; r < N; ++r) {
        const T* row = x + std::size_t(r) * K;
        const T mx = *std::max_element(row, row + K);
        const T s = simd::reduce(std::size_t(K), row, [mx](auto v) {
            using V = decltype(v);
            return xsimd::exp(v - V(mx));
        });
        const T lse = mx + std::log(s);
        const T wr = w ? w[r] : T(1);
        total += double(wr) * double(lse - row[labels[r]]);
        if (dx) {
            T* drow = dx + std::size_t(r) * K;
            const T k = dloss * wr / T(N);
            simd::map2(std::size_t(K), row, drow, drow, [k, lse](auto v, auto d) {
                using V = decltype(v);
                return d + V(k) * xsimd::exp(v - V(lse));
            });
            drow[labels[r]] -= k;
        }
    }
    return T(total / N);
}

}  // namespace detail

/// Mean cross-entropy of logits [N, Classes] against int labels [N]; throws std::out_of_range
/// for a label outside [0, Classes). dlogits += dloss · (softmax - onehot) / N unless null.
template <Shaped L, Shaped Lab, Shaped DL>
detail::value_type_of<L> cross_entropy(const L& logits, const Lab& labels, DL&& dlogits,
                                       detail::value_type_of<L> dloss = 1) {
    detail::check_classification<L, Lab>();
    static_assert(same_shape<shape_of<L>, shape_of<DL>>, "cross_entropy: the gradient must have the logits' shape");
    return detail::cross_entropy_rows<shape_of<L>::first, shape_of<L>::last>(
        logits.data(), labels.data(), static_cast<const detail::value_type_of<L>*>(nullptr), dlogits.data(), dloss);
}

/// Per-sample weighted: mean of w_i · loss_i, weights [N].
template <Shaped L, Shaped Lab, Shaped W, Shaped DL>
detail::value_type_of<L> cross_entropy(const L& logits, const Lab& labels, const W& weights, DL&& dlogits,
                                       detail::value_type_of<L> dloss = 1) {
    detail::check_classification<L, Lab>();
    static_assert(same_shape<shape_of<W>, shape_of<Lab>>, "cross_entropy: weights must be [N], one per row");
    static_assert(same_shape<shape_of<L>, shape_of<DL>>, "cross_entropy: the gradient must have the logits' shape");
    return detail::cross_entropy_rows<shape_of<L>::first, shape_of<L>::last>(logits.data(), labels.data(),
                                                                             weights.data(), dlogits.data(), dloss);
}

/// Fraction of rows whose argmax (the first largest logit) equals the label.
template <Shaped L, Shaped Lab>
double accuracy(const L& logits, const Lab& labels) {
    detail::check_classification<L, Lab>();
    constexpr int N = shape_of<L>::first, K = shape_of<L>::last;
    int correct = 0;
    for (int r = 0; r < N; ++r) {
        const auto* row = logits.data() + std::size_t(r) * K;
        correct += int(std::max_element(row, row + K) - row) == labels.data()[r];
    }
    return double(correct) / N;
}

}  // namespace diffuse

#endif
