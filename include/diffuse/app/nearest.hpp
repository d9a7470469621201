// Nearest neighbours by squared Euclidean distance over feature vectors: the order of n items
// around a query, the k nearest, and the rank of a target item (or the best rank of a set of
// targets). Items are n feature vectors of `dim` values each, row-major [n, dim]; distances are
// summed in double, in order, so the result does not depend on threads. Ties are broken by index
// (the lower index comes first), so every call has one answer. Bad input — no items, dim 0, a null
// pointer, k or a target outside the items, a non-finite distance — throws std::invalid_argument
// (std::out_of_range for an index) saying what was wrong.
#ifndef DIFFUSE_APP_NEAREST_HPP
#define DIFFUSE_APP_NEAREST_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffuse::app {

/// Σ (a_i − b_i)² over dim values, in double.
template <class T, class U>
double squared_distance(const T* a, const U* b, std::size_t dim) {
    double s = 0;
    for (std::size_t i = 0; i < dim; ++i) {
        const double d = double(a[i]) - double(b[i]);
        s += d * d;
    }
    return s;
}

namespace detail {
inline void check_items(const void* query, const void* items, int n, std::size_t dim, const char* who) {
    if (!query || !items) throw std::invalid_argument(std::string(who) + ": null query or items");
    if (n < 1) throw std::invalid_argument(std::string(who) + ": need at least one item, got " + std::to_string(n));
    if (dim == 0) throw std::invalid_argument(std::string(who) + ": feature vectors must not be empty");
}
inline void check_index(int i, int n, const char* who, const char* what) {
    if (i < 0 || i >= n)
        throw std::out_of_range(std::string(who) + ": " + what + " " + std::to_string(i) + " is outside 0.." +
                                std::to_string(n - 1));
}
}  // namespace detail

/// The squared distance from the query to each of the n items; throws when one is not finite.
template <class T, class U>
std::vector<double> distances(const T* query, const U* items, int n, std::size_t dim) {
    detail::check_items(query, items, n, dim, "distances");
    std::vector<double> d(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        d[std::size_t(i)] = squared_distance(query, items + std::size_t(i) * dim, dim);
        if (!std::isfinite(d[std::size_t(i)]))
            throw std::invalid_argument("distances: the distance to item " + std::to_string(i) +
                                        " is not finite (NaN or infinite features)");
    }
    return d;
}

/// Item a comes before item b: nearer, or as near with a lower index.
inline bool nearer(const std::vector<double>& d, int a, int b) {
    const double da = d[std::size_t(a)], db = d[std::size_t(b)];
    return da < db || (da == db && a < b);
}

/// The k nearest of the items whose distances are d, nearest first (ties by index); 1 <= k <= d.size().
inline std::vector<int> top_k(const std::vector<double>& d, int k) {
    const int n = int(d.size());
    if (k < 1 || k > n)
        throw std::invalid_argument("top_k: k must be in 1.." + std::to_string(n) + ", not " + std::to_string(k));
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&d](int a, int b) { return nearer(d, a, b); });
    order.resize(std::size_t(k));
    return order;
}

/// The best (lowest) 0-based rank of any of the targets among the items whose distances are d: how
/// many items come before the first of them (0: one of them is the nearest). A target is among the
/// k nearest exactly when its rank is below k. Several targets serve when several items are equally
/// right (entries sharing one caption); targets must be non-empty and inside the items, repeats allowed.
inline int best_rank(const std::vector<double>& d, const std::vector<int>& targets) {
    const int n = int(d.size());
    if (targets.empty()) throw std::invalid_argument("rank: no targets");
    for (int t : targets) detail::check_index(t, n, "rank", "target");
    const int first = *std::min_element(targets.begin(), targets.end(), [&d](int a, int b) { return nearer(d, a, b); });
    int rank = 0;
    for (int i = 0; i < n; ++i) rank += nearer(d, i, first) ? 1 : 0;
    return rank;
}

/// The k nearest of n items [n, dim] to the query, nearest first (ties by index); 1 <= k <= n.
template <class T, class U>
std::vector<int> nearest(const T* query, const U* items, int n, std::size_t dim, int k) {
    return top_k(distances(query, items, n, dim), k);
}

/// 0-based rank of item `target` around the query: how many of the n items come before it.
template <class T, class U>
int rank_of(const T* query, const U* items, int n, std::size_t dim, int target) {
    detail::check_items(query, items, n, dim, "rank_of");
    detail::check_index(target, n, "rank_of", "target");
    return best_rank(distances(query, items, n, dim), {target});
}

}  // namespace diffuse::app

#endif
