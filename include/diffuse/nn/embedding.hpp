// Embedding: a lookup table, y[n, t, :] = weight[ids[n, t], :], as PyTorch's nn.Embedding
// (weight [Vocab, D], initialised N(0, 1)). TokenPositionEmbedding adds a learned position table
// [Ctx, D] (Keras' TokenAndPositionEmbedding, CLIP's token + position embedding).
//
// Token ids are data, so their range is checked at run time: an id outside [0, Vocab) throws
// std::out_of_range (before anything is written), in forward and in backward.
//
// Backward scatters dy rows into the weight gradient. Repeated ids add into the same row, so the
// scatter runs in position order on one thread: the sum's order is fixed, the result reproducible.
#ifndef DIFFUSE_NN_EMBEDDING_HPP
#define DIFFUSE_NN_EMBEDDING_HPP

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T, int Vocab, int D>
struct Embedding {
    static_assert(Vocab > 0 && D > 0, "Embedding: vocabulary size and width must be positive");
    static constexpr int vocab_size = Vocab, width = D;

    Param<T, Vocab, D> weight{Init::Normal(1.0)};

    template <class V>
    constexpr void visit(V& v) {
        v("weight", weight);
    }

    template <class IdsShape>
    using output_shape = AppendLast<IdsShape, D>;

    template <Shaped Ids, Shaped Y>
    void forward(const Ids& ids, Y&& y) const {
        check_shapes<Ids, Y>();
        check_ids(ids);
        const std::int32_t* id = ids.data();
        T* yp = y.data();
        parallel_for_light(int(shape_of<Ids>::size), shape_of<Ids>::size * D, [&](int r) {
            const T* row = weight.value_ptr + std::size_t(id[r]) * D;
            std::copy(row, row + D, yp + std::size_t(r) * D);
        });
    }

    /// The ids carry no gradient: only the weight gradient is accumulated.
    template <Shaped Ids, Shaped Y, Shaped DY>
    void backward(const Ids& ids, const Y&, const DY& dy) const {
        check_shapes<Ids, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>>, "Embedding: the gradient must have the output's shape");
        check_ids(ids);
        const std::int32_t* id = ids.data();
        for (std::size_t r = 0; r < shape_of<Ids>::size; ++r)
            simd::add_to(std::size_t(D), dy.data() + r * D, weight.grad_ptr + std::size_t(id[r]) * D);
    }

    /// Throws std::out_of_range naming the first id outside [0, Vocab).
    template <Shaped Ids>
    static void check_ids(const Ids& ids) {
        for (std::size_t r = 0; r < shape_of<Ids>::size; ++r)
            if (ids.data()[r] < 0 || ids.data()[r] >= Vocab)
                throw std::out_of_range("Embedding: token id " + std::to_string(ids.data()[r]) + " at position " +
                                        std::to_string(r) + " is outside the vocabulary [0, " + std::to_string(Vocab) +
                                        ")");
    }

private:
    template <class Ids, class Y>
    static constexpr void check_shapes() {
        static_assert(std::is_same_v<typename std::remove_cvref_t<Ids>::value_type, std::int32_t>,
                      "Embedding: token ids must be int32");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<Ids>>>,
                      "Embedding: the output must have the ids' shape with one more dimension of width D");
    }
};

/// y[n, t, :] = token.weight[ids[n, t], :] + position.weight[t, :] for ids [N, T], T <= Ctx.
template <class T, int Vocab, int Ctx, int D>
struct TokenPositionEmbedding {
    static_assert(Ctx > 0, "TokenPositionEmbedding: the context length must be positive");
    static constexpr int vocab_size = Vocab, context_length = Ctx, width = D;

    Embedding<T, Vocab, D> token;
    Embedding<T, Ctx, D> position;  // row t is the embedding of position t

    template <class V>
    constexpr void visit(V& v) {
        v("token", token);
        v("position", position);
    }

    template <class IdsShape>
    using output_shape = AppendLast<IdsShape, D>;

    template <Shaped Ids, Shaped Y>
    void forward(const Ids& ids, Y&& y) const {
        check_shapes<Ids>();
        constexpr int N = shape_of<Ids>::first, Len = shape_of<Ids>::last;
        token.forward(ids, y);
        T* yp = y.data();
        parallel_for_light(N, std::size_t(N) * Len * D, [&](int n) {
            simd::add_to(std::size_t(Len) * D, position.weight.value_ptr, yp + std::size_t(n) * Len * D);
        });
    }

    template <Shaped Ids, Shaped Y, Shaped DY>
    void backward(const Ids& ids, const Y& y, const DY& dy) const {
        check_shapes<Ids>();
        constexpr int N = shape_of<Ids>::first, Len = shape_of<Ids>::last;
        token.backward(ids, y, dy);
        // Position t sums dy[n, t] over the batch, n in order; positions are independent.
        const T* dyp = dy.data();
        parallel_for_light(Len, std::size_t(N) * Len * D, [&](int t) {
            for (int n = 0; n < N; ++n)
                simd::add_to(std::size_t(D), dyp + (std::size_t(n) * Len + t) * D,
                             position.weight.grad_ptr + std::size_t(t) * D);
        });
    }

private:
    template <class Ids>
    static constexpr void check_shapes() {
        static_assert(shape_of<Ids>::rank == 2, "TokenPositionEmbedding: the ids must be [N, T]");
        static_assert(shape_of<Ids>::last <= Ctx,
                      "TokenPositionEmbedding: the sequence is longer than the context length");
    }
};

}  // namespace diffuse

#endif
