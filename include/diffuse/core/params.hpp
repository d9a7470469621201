// Parameters live in one flat buffer per model (values, and gradients in a second buffer of the
// same layout), so the optimizer is one vectorized loop and a checkpoint is one walk.
//
// A layer declares its parameters as Param<T, D...> members, each with its initializer, and
// names them in a visitor:
//
//     template <class V> void visit(V& v) { v("weight", weight); v("bias", bias); }
//
// A composite names its children the same way (v("conv1", conv1)), giving PyTorch state-dict
// names such as "unet.down.0.res.0.conv1.weight". ParamStore walks the visitor once to size the
// buffers, then binds every Param to its slice and initializes it from a seeded generator.
#ifndef DIFFUSE_CORE_PARAMS_HPP
#define DIFFUSE_CORE_PARAMS_HPP

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// How a parameter starts: the store applies it when it binds the parameter.
struct Init {
    enum Kind { zeros, ones, uniform, normal } kind = zeros;
    double scale = 0;  // bound for uniform(-scale, scale), stddev for normal

    static constexpr Init Zeros() { return {zeros, 0}; }
    static constexpr Init Ones() { return {ones, 0}; }
    static constexpr Init Uniform(double bound) { return {uniform, bound}; }
    static constexpr Init Normal(double stddev) { return {normal, stddev}; }
    /// PyTorch's default for Linear and Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    static constexpr Init FanIn(int fan_in) { return Uniform(1.0 / std::sqrt(double(fan_in))); }
};

template <class T, int... D>
struct Param {
    using value_type = T;
    using shape = Shape<D...>;
    static constexpr std::size_t size = shape::size;

    Init init;
    T* value_ptr = nullptr;
    T* grad_ptr = nullptr;

    constexpr Param() = default;
    constexpr explicit Param(Init i) : init(i) {}

    View<T, D...> value() const { return View<T, D...>(value_ptr); }
    View<T, D...> grad() const { return View<T, D...>(grad_ptr); }
    const T* data() const { return value_ptr; }
};

template <class X>
struct is_param : std::false_type {};
template <class T, int... D>
struct is_param<Param<T, D...>> : std::true_type {};

/// What the visitor hands out for each parameter: its full name and where it lives.
template <class T>
struct ParamInfo {
    std::string name;
    std::vector<int> dims;
    std::size_t offset = 0;  // into the flat buffers
    std::size_t size = 0;
};

namespace detail {
template <class F>
struct NamingVisitor {
    std::string prefix;
    F& f;
    template <class X>
    void operator()(std::string_view name, X& x) {
        std::string full = prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
        if constexpr (is_param<X>::value) {
            f(full, x);
        } else {
            NamingVisitor<F> sub{std::move(full), f};
            x.visit(sub);
        }
    }
    /// Numbered children, as PyTorch's ModuleList: "blocks.0", "blocks.1", ...
    template <class X>
    void operator()(std::string_view name, int index, X& x) {
        (*this)(std::string(name) + "." + std::to_string(index), x);
    }
};
}  // namespace detail

/// Calls f(name, param) for every Param of the model, in declaration order.
template <class Model, class F>
void for_each_param(Model& model, F&& f) {
    detail::NamingVisitor<F> v{"", f};
    model.visit(v);
}

/// The flat parameter and gradient buffers of one model, bound to its Param members.
template <class T>
class ParamStore {
public:
    /// Each parameter starts on a 64-byte boundary (padding stays zero in values and grads).
    static constexpr std::size_t kPad = kAlign / sizeof(T);

    ParamStore() = default;
    template <class Model>
    explicit ParamStore(Model& model, std::uint64_t seed = 0) {
        bind(model, seed);
    }
    ParamStore(const ParamStore&) = delete;
    ParamStore& operator=(const ParamStore&) = delete;
    ParamStore(ParamStore&&) = default;
    ParamStore& operator=(ParamStore&&) = default;

    template <class Model>
    void bind(Model& model, std::uint64_t seed = 0) {
        infos_.clear();
        std::size_t total = 0;
        for_each_param(model, [&](const std::string& name, auto& p) {
            using P = std::remove_reference_t<decltype(p)>;
            static_assert(std::is_same_v<typename P::value_type, T>,
                          "ParamStore: parameter type differs from the store's");
            ParamInfo<T> info{name, {P::shape::dims.begin(), P::shape::dims.end()}, total, P::size};
            for (const auto& other : infos_)
                if (other.name == name) throw std::logic_error("ParamStore: duplicate parameter name " + name);
            infos_.push_back(std::move(info));
            total += (P::size + kPad - 1) / kPad * kPad;
        });
        values_ = AlignedBuffer<T>(total);
        grads_ = AlignedBuffer<T>(total);
        Rng rng(seed);
        std::size_t i = 0;
        for_each_param(model, [&](const std::string&, auto& p) {
            const auto& info = infos_[i++];
            p.value_ptr = values_.data() + info.offset;
            p.grad_ptr = grads_.data() + info.offset;
            initialize(p.value_ptr, info.size, p.init, rng);
        });
    }

    T* values() { return values_.data(); }
    const T* values() const { return values_.data(); }
    T* grads() { return grads_.data(); }
    const T* grads() const { return grads_.data(); }
    /// Length of the flat buffers, padding included.
    std::size_t size() const { return values_.size(); }
    /// Number of real parameters (no padding).
    std::size_t count() const {
        std::size_t n = 0;
        for (const auto& i : infos_) n += i.size;
        return n;
    }
    const std::vector<ParamInfo<T>>& infos() const { return infos_; }
    const ParamInfo<T>& info(std::string_view name) const {
        for (const auto& i : infos_)
            if (i.name == name) return i;
        throw std::out_of_range("ParamStore: no parameter named " + std::string(name));
    }
    void zero_grad() { parallel_fill(grads_.data(), grads_.size(), T(0)); }

private:
    static void initialize(T* p, std::size_t n, const Init& init, Rng& rng) {
        for (std::size_t k = 0; k < n; ++k) {
            switch (init.kind) {
                case Init::zeros:
                    p[k] = T(0);
                    break;
                case Init::ones:
                    p[k] = T(1);
                    break;
                case Init::uniform:
                    p[k] = T(rng.uniform(-init.scale, init.scale));
                    break;
                case Init::normal:
                    p[k] = T(rng.normal() * init.scale);
                    break;
            }
        }
    }

    std::vector<ParamInfo<T>> infos_;
    AlignedBuffer<T> values_, grads_;
};

/// Binds a second instance of a model's parameter tree to other buffers of the store's layout: each
/// Param of `model` points into `values` and `grads` (null: no gradient) at the offset its name has in
/// `store`. Passes through `model` then read those weights and write those gradients, with no copy and
/// no change to the store's model: averaged weights for sampling (bind_values), or the same weights
/// with gradients of their own for a second share of a batch (train/diffusion_pass.hpp).
template <class T, class Model>
void bind_buffers(Model& model, const ParamStore<T>& store, T* values, T* grads) {
    std::size_t i = 0;
    for_each_param(model, [&](const std::string& name, auto& p) {
        const auto& infos = store.infos();
        if (i >= infos.size() || infos[i].name != name)
            throw std::logic_error("bind_buffers: parameter " + name + " is not laid out as in the store");
        p.value_ptr = values + infos[i].offset;
        p.grad_ptr = grads ? grads + infos[i].offset : nullptr;
        ++i;
    });
    if (i != store.infos().size())
        throw std::logic_error("bind_buffers: the model has fewer parameters than the store");
}
/// bind_buffers with no gradient: a model instance that reads `values` (e.g. averaged weights).
template <class T, class Model>
void bind_values(Model& model, const ParamStore<T>& store, T* values) {
    bind_buffers(model, store, values, static_cast<T*>(nullptr));
}

/// Parameter count of a model type, known at compile time: sums Param sizes through the visitor.
namespace detail {
struct CountVisitor {
    std::size_t n = 0;
    template <class X>
    constexpr void operator()(std::string_view, X& x) {
        if constexpr (is_param<X>::value) n += X::size;
        else x.visit(*this);
    }
    template <class X>
    constexpr void operator()(std::string_view name, int, X& x) {
        (*this)(name, x);
    }
};
}  // namespace detail

/// Where a part's gradients lie in its store's flat buffer: [first, last) of the bytes its Params'
/// gradients span, padding included (bind() lays a part's Params out contiguously, in visit order). For hooks that
/// act as soon as a backward pass has finished a part (dist/: gradient buckets); allocates nothing.
struct GradSpan {
    const void* first = nullptr;
    const void* last = nullptr;
};
namespace detail {
struct SpanVisitor {
    const char* first = nullptr;
    const char* last = nullptr;
    template <class X>
    void operator()(std::string_view, X& x) {
        if constexpr (is_param<X>::value) {
            // Up to the next Param's start (each starts on a kAlign boundary): a part's span meets
            // the next part's, with no gap of padding between them.
            const std::size_t bytes = X::size * sizeof(typename X::value_type);
            const char* b = reinterpret_cast<const char*>(x.grad_ptr);
            const char* e = b + (bytes + kAlign - 1) / kAlign * kAlign;
            if (!first || b < first) first = b;
            if (!last || e > last) last = e;
        } else x.visit(*this);
    }
    template <class X>
    void operator()(std::string_view name, int, X& x) {
        (*this)(name, x);
    }
};
}  // namespace detail

template <class Part>
GradSpan grad_span(const Part& part) {
    detail::SpanVisitor v;
    const_cast<Part&>(part).visit(v);  // visit() only reads the Params' pointers here
    return {v.first, v.last};
}

/// The hook a backward pass calls with each part it has finished (a default that does nothing).
struct NoGradHook {
    template <class Part>
    void operator()(const Part&) const {}
};

template <class Model>
constexpr std::size_t param_count() {
    Model m{};
    detail::CountVisitor v;
    m.visit(v);
    return v.n;
}

}  // namespace diffuse

#endif
