// The safetensors format (Hugging Face's; read by Python's `safetensors` and by PyTorch users):
//   8 bytes   little-endian uint64 N, the header length
//   N bytes   JSON: {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [2, 3],
//             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
//   rest      the tensors' little-endian bytes; offsets are relative to the end of the header
//             and the tensors tile the data exactly (no gaps, no overlap, nothing after).
//
// SafetensorsWriter saves named tensors (float/double converted to F32, F16, BF16 or F64 on the
// way out) through AtomicFile, so an interrupted save leaves the previous file intact.
// SafetensorsFile reads and validates a file's header up front; its tensors are then read by
// name, converted to float or double. load_params fills a ParamStore by state-dict name.
#ifndef DIFFUSE_IO_SAFETENSORS_HPP
#define DIFFUSE_IO_SAFETENSORS_HPP

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/half.hpp"
#include "diffuse/io/json.hpp"

namespace diffuse::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors: this implementation copies little-endian data as is and needs a little-endian CPU");

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

namespace detail {
struct DTypeInfo {
    DType dtype;
    const char* name;
    std::size_t size;
};
inline constexpr DTypeInfo kDTypes[] = {{DType::F64, "F64", 8},   {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
                                        {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
                                        {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U64, "U64", 8},
                                        {DType::U32, "U32", 4},   {DType::U16, "U16", 2}, {DType::U8, "U8", 1},
                                        {DType::BOOL, "BOOL", 1}};
}  // namespace detail

inline const char* dtype_name(DType d) { return detail::kDTypes[int(d)].name; }
inline std::size_t dtype_size(DType d) { return detail::kDTypes[int(d)].size; }
inline bool is_float_dtype(DType d) {
    return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

/// The dtype that stores C++ type T unchanged.
template <class T>
constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, double>) return DType::F64;
    else if constexpr (std::is_same_v<T, float>) return DType::F32;
    else if constexpr (std::is_same_v<T, bool>) return DType::BOOL;
    else if constexpr (std::is_same_v<T, std::int64_t>) return DType::I64;
    else if constexpr (std::is_same_v<T, std::int32_t>) return DType::I32;
    else if constexpr (std::is_same_v<T, std::int16_t>) return DType::I16;
    else if constexpr (std::is_same_v<T, std::int8_t>) return DType::I8;
    else if constexpr (std::is_same_v<T, std::uint64_t>) return DType::U64;
    else if constexpr (std::is_same_v<T, std::uint32_t>) return DType::U32;
    else if constexpr (std::is_same_v<T, std::uint16_t>) return DType::U16;
    else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::U8;
    else static_assert(sizeof(T) == 0, "safetensors: no dtype for this element type");
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

namespace detail {

/// Element-wise conversion between a float/double buffer and a stored float dtype.
template <class T>
void encode_floats(const T* src, std::size_t n, DType as, unsigned char* dst) {
    for (std::size_t i = 0; i < n; ++i) {
        switch (as) {
            case DType::F64: {
                const double v = double(src[i]);
                std::memcpy(dst + 8 * i, &v, 8);
                break;
            }
            case DType::F32: {
                const float v = float(src[i]);
                std::memcpy(dst + 4 * i, &v, 4);
                break;
            }
            case DType::F16: {
                const std::uint16_t v = float_to_half(float(src[i]));
                std::memcpy(dst + 2 * i, &v, 2);
                break;
            }
            case DType::BF16: {
                const std::uint16_t v = float_to_bf16(float(src[i]));
                std::memcpy(dst + 2 * i, &v, 2);
                break;
            }
            default:
                throw std::logic_error("safetensors: not a float dtype");
        }
    }
}

template <class T>
void decode_floats(const unsigned char* src, std::size_t n, DType from, T* dst) {
    for (std::size_t i = 0; i < n; ++i) {
        switch (from) {
            case DType::F64: {
                double v;
                std::memcpy(&v, src + 8 * i, 8);
                dst[i] = T(v);
                break;
            }
            case DType::F32: {
                float v;
                std::memcpy(&v, src + 4 * i, 4);
                dst[i] = T(v);
                break;
            }
            case DType::F16: {
                std::uint16_t v;
                std::memcpy(&v, src + 2 * i, 2);
                dst[i] = T(half_to_float(v));
                break;
            }
            case DType::BF16: {
                std::uint16_t v;
                std::memcpy(&v, src + 2 * i, 2);
                dst[i] = T(bf16_to_float(v));
                break;
            }
            default:
                throw std::logic_error("safetensors: not a float dtype");
        }
    }
}

/// Element count of a shape, or throws if it overflows.
inline std::uint64_t checked_numel(const std::vector<std::int64_t>& shape, const std::string& what) {
    std::uint64_t n = 1;
    for (auto d : shape) {
        if (d < 0) throw std::runtime_error(what + ": negative dimension in shape " + shape_string(shape));
        if (d != 0 && n > UINT64_MAX / 8 / std::uint64_t(d))
            throw std::runtime_error(what + ": shape " + shape_string(shape) + " is too large");
        n *= std::uint64_t(d);
    }
    return n;
}

inline constexpr std::size_t kChunk = 1 << 16;  // elements converted per step when streaming

}  // namespace detail

/// Collects named tensors and writes them as one safetensors file. Only pointers are kept:
/// the data must stay valid until save() returns.
class SafetensorsWriter {
public:
    /// A float or double tensor stored as `as` (F32, F16, BF16 or F64); integer and bool
    /// tensors are stored unchanged, so `as` must be their own dtype.
    template <class T>
    void add(std::string name, std::vector<std::int64_t> shape, const T* data, DType as = dtype_of<T>()) {
        Entry e{std::move(name), as, std::move(shape), data, dtype_of<T>()};
        if constexpr (std::is_floating_point_v<T>) {
            if (!is_float_dtype(as))
                throw std::invalid_argument("safetensors: tensor '" + e.name +
                                            "': cannot store floating-point data as " + dtype_name(as));
        } else if (as != dtype_of<T>()) {
            throw std::invalid_argument("safetensors: tensor '" + e.name + "': " + dtype_name(dtype_of<T>()) +
                                        " data can only be stored as " + dtype_name(dtype_of<T>()));
        }
        push(std::move(e));
    }

    /// Bytes already in the stored little-endian layout of dtype.
    void add_raw(std::string name, DType dtype, std::vector<std::int64_t> shape, const void* bytes) {
        push(Entry{std::move(name), dtype, std::move(shape), bytes, dtype});
    }

    void set_metadata(const std::string& key, const std::string& value) {
        if (!json::is_valid_utf8(key) || !json::is_valid_utf8(value))
            throw std::invalid_argument("safetensors: metadata '" + key + "' is not valid UTF-8");
        metadata_[key] = value;
    }

    /// The JSON header (padded with spaces to a multiple of 8 bytes) and the data byte count.
    std::string header(std::uint64_t* data_bytes = nullptr) const {
        std::string h = "{";
        if (!metadata_.empty()) {
            h += "\"__metadata__\":{";
            bool first = true;
            for (const auto& [k, v] : metadata_) {
                if (!first) h += ',';
                h += json::quote(k) + ":" + json::quote(v);
                first = false;
            }
            h += "}";
        }
        std::uint64_t offset = 0;
        for (const auto& e : entries_) {
            const std::uint64_t bytes = e.numel * dtype_size(e.dtype);
            if (h.size() > 1) h += ",";
            h += json::quote(e.name) + ":{\"dtype\":\"" + dtype_name(e.dtype) + "\",\"shape\":[";
            for (std::size_t i = 0; i < e.shape.size(); ++i) {
                if (i) h += ',';
                h += std::to_string(e.shape[i]);
            }
            h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
            offset += bytes;
        }
        h += "}";
        h.append((8 - h.size() % 8) % 8, ' ');
        if (data_bytes) *data_bytes = offset;
        return h;
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    void save(const std::string& path) const {
        const std::string h = header();
        AtomicFile out(path);
        unsigned char len[8];
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(std::uint64_t(h.size()) >> (8 * i));
        out.write(len, 8);
        out.write(h.data(), h.size());
        std::vector<unsigned char> buf;
        for (const auto& e : entries_) {
            const std::size_t esize = dtype_size(e.dtype);
            if (e.source == e.dtype) {  // stored unchanged
                out.write(e.data, std::size_t(e.numel) * esize);
                continue;
            }
            buf.resize(detail::kChunk * esize);
            for (std::uint64_t i = 0; i < e.numel; i += detail::kChunk) {
                const std::size_t n = std::size_t(std::min<std::uint64_t>(detail::kChunk, e.numel - i));
                if (e.source == DType::F32)
                    detail::encode_floats(static_cast<const float*>(e.data) + i, n, e.dtype, buf.data());
                else detail::encode_floats(static_cast<const double*>(e.data) + i, n, e.dtype, buf.data());
                out.write(buf.data(), n * esize);
            }
        }
        out.commit();
    }

private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<std::int64_t> shape;
        const void* data;
        DType source;  // the layout `data` holds
        std::uint64_t numel = 0;
    };

    void push(Entry e) {
        const std::string what = "safetensors: tensor '" + e.name + "'";
        if (e.name.empty() || e.name == "__metadata__" || !json::is_valid_utf8(e.name))
            throw std::invalid_argument(what + ": names must be non-empty UTF-8 and not __metadata__");
        for (const auto& other : entries_)
            if (other.name == e.name) throw std::invalid_argument(what + " added twice");
        e.numel = detail::checked_numel(e.shape, what);
        if (e.numel > 0 && !e.data) throw std::invalid_argument(what + ": null data");
        entries_.push_back(std::move(e));
    }

    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

/// One tensor as described by a file's header.
struct TensorEntry {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0, end = 0;  // byte offsets into the data section
    std::uint64_t numel = 0;
};

/// A safetensors file whose header has been read and validated; tensor data is read on demand.
class SafetensorsFile {
public:
    /// Headers above this size are refused as corrupt (the reference implementation's limit).
    static constexpr std::uint64_t kMaxHeader = 100'000'000;

    explicit SafetensorsFile(std::string path) : path_(std::move(path)) {
        in_.open(path_, std::ios::binary);
        if (!in_) fail("cannot open (" + std::string(std::strerror(errno)) + ")");
        in_.seekg(0, std::ios::end);
        const auto size = std::uint64_t(in_.tellg());
        in_.seekg(0);
        if (size < 8) fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
        unsigned char len[8];
        read_at(0, len, 8);
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = n << 8 | len[i];
        if (n == 0) fail("header length is 0");
        if (n > kMaxHeader)
            fail("header length " + std::to_string(n) + " is implausible (over " + std::to_string(kMaxHeader) + ")");
        if (n > size - 8)
            fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                 " bytes)");
        std::string header(std::size_t(n), '\0');
        read_at(8, header.data(), header.size());
        data_start_ = 8 + n;
        data_size_ = size - data_start_;
        parse_header(header);
    }

    const std::string& path() const { return path_; }
    /// Tensors in the order of their data.
    const std::vector<TensorEntry>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    const TensorEntry* find(std::string_view name) const {
        for (const auto& t : tensors_)
            if (t.name == name) return &t;
        return nullptr;
    }
    const TensorEntry& at(std::string_view name) const {
        if (const auto* t = find(name)) return *t;
        fail("no tensor named '" + std::string(name) + "'");
    }

    /// Reads tensor `name` into count elements at out: float dtypes convert to float or double;
    /// integer and bool tensors must match T's own dtype.
    template <class T>
    void read(std::string_view name, T* out, std::size_t count) const {
        const TensorEntry& t = at(name);
        if (t.numel != count)
            fail("tensor '" + t.name + "' has " + std::to_string(t.numel) + " elements, the caller expects " +
                 std::to_string(count));
        const std::size_t esize = dtype_size(t.dtype);
        if constexpr (std::is_floating_point_v<T>) {
            if (!is_float_dtype(t.dtype))
                fail("tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
                     ", which does not convert to floating point");
            if (t.dtype == dtype_of<T>()) {
                read_at(data_start_ + t.begin, out, count * esize);
                return;
            }
            std::vector<unsigned char> buf(detail::kChunk * esize);
            for (std::size_t i = 0; i < count; i += detail::kChunk) {
                const std::size_t n = std::min(detail::kChunk, count - i);
                read_at(data_start_ + t.begin + i * esize, buf.data(), n * esize);
                detail::decode_floats(buf.data(), n, t.dtype, out + i);
            }
        } else {
            if (t.dtype != dtype_of<T>())
                fail("tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) + ", the caller expects " +
                     dtype_name(dtype_of<T>()));
            read_at(data_start_ + t.begin, out, count * esize);
        }
    }

    template <class T>
    std::vector<T> read(std::string_view name) const {
        std::vector<T> v(std::size_t(at(name).numel));
        read(name, v.data(), v.size());
        return v;
    }

    /// The stored bytes of a tensor, whatever its dtype.
    std::vector<unsigned char> read_raw(std::string_view name) const {
        const TensorEntry& t = at(name);
        std::vector<unsigned char> v(std::size_t(t.end - t.begin));
        read_at(data_start_ + t.begin, v.data(), v.size());
        return v;
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("safetensors file " + path_ + ": " + what);
    }

private:
    void read_at(std::uint64_t offset, void* dst, std::size_t n) const {
        in_.clear();
        in_.seekg(std::streamoff(offset));
        in_.read(static_cast<char*>(dst), std::streamsize(n));
        if (!in_ || std::size_t(in_.gcount()) != n)
            fail("read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " failed");
    }

    void parse_header(const std::string& text) {
        json::Value root;
        try {
            root = json::parse(text);
        } catch (const std::runtime_error& e) { fail(std::string("header is not valid JSON (") + e.what() + ")"); }
        if (root.kind != json::Value::object)
            fail(std::string("header is ") + json::kind_name(root.kind) + ", expected an object");
        for (std::size_t i = 0; i < root.keys.size(); ++i) {
            const std::string& key = root.keys[i];
            const json::Value& v = root.items[i];
            if (key == "__metadata__") {
                if (v.kind != json::Value::object)
                    fail("__metadata__ is " + std::string(json::kind_name(v.kind)) + ", expected an object");
                for (std::size_t k = 0; k < v.keys.size(); ++k) {
                    if (v.items[k].kind != json::Value::string)
                        fail("__metadata__ value of '" + v.keys[k] + "' is " + json::kind_name(v.items[k].kind) +
                             ", expected a string");
                    metadata_[v.keys[k]] = v.items[k].text;
                }
            } else {
                tensors_.push_back(parse_entry(key, v));
            }
        }
        check_layout();
    }

    TensorEntry parse_entry(const std::string& name, const json::Value& v) const {
        const std::string what = "tensor '" + name + "'";
        if (v.kind != json::Value::object)
            fail(what + " is described by " + json::kind_name(v.kind) + ", expected an object");
        for (const auto& k : v.keys)
            if (k != "dtype" && k != "shape" && k != "data_offsets") fail(what + " has an unknown field '" + k + "'");
        const json::Value* dtype = v.find("dtype");
        const json::Value* shape = v.find("shape");
        const json::Value* offsets = v.find("data_offsets");
        if (!dtype || !shape || !offsets) fail(what + " needs dtype, shape and data_offsets");
        TensorEntry t;
        t.name = name;
        if (dtype->kind != json::Value::string)
            fail(what + ": dtype is " + json::kind_name(dtype->kind) + ", expected a string");
        bool known = false;
        for (const auto& d : detail::kDTypes)
            if (dtype->text == d.name) {
                t.dtype = d.dtype;
                known = true;
            }
        if (!known) fail(what + " has an unsupported dtype '" + dtype->text + "'");
        if (shape->kind != json::Value::array)
            fail(what + ": shape is " + json::kind_name(shape->kind) + ", expected an array");
        try {
            for (std::size_t k = 0; k < shape->items.size(); ++k) {
                const std::uint64_t d = json::as_u64(shape->items[k], what + ": shape[" + std::to_string(k) + "]");
                if (d > std::uint64_t(INT64_MAX)) fail(what + ": shape[" + std::to_string(k) + "] is too large");
                t.shape.push_back(std::int64_t(d));
            }
            if (offsets->kind != json::Value::array || offsets->items.size() != 2)
                fail(what + ": data_offsets must be an array of two integers");
            t.begin = json::as_u64(offsets->items[0], what + ": data_offsets[0]");
            t.end = json::as_u64(offsets->items[1], what + ": data_offsets[1]");
            t.numel = detail::checked_numel(t.shape, what);
        } catch (const std::runtime_error& e) {
            if (std::string_view(e.what()).starts_with("safetensors file ")) throw;
            fail(e.what());
        }
        if (t.end < t.begin)
            fail(what + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 "] end before they begin");
        const std::uint64_t need = t.numel * dtype_size(t.dtype);
        if (t.end - t.begin != need)
            fail(what + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] hold " +
                 std::to_string(t.end - t.begin) + " bytes, but " + dtype_name(t.dtype) + " " + shape_string(t.shape) +
                 " needs " + std::to_string(need));
        return t;
    }

    /// The tensors must tile the data section exactly, as the reference implementation demands.
    void check_layout() {
        std::sort(tensors_.begin(), tensors_.end(), [](const TensorEntry& a, const TensorEntry& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        std::uint64_t pos = 0;
        for (const auto& t : tensors_) {
            if (t.end > data_size_)
                fail("tensor '" + t.name + "' ends at data byte " + std::to_string(t.end) +
                     " but the file holds only " + std::to_string(data_size_) + " data bytes (truncated?)");
            if (t.begin != pos)
                fail("tensor '" + t.name + "' starts at data byte " + std::to_string(t.begin) + ", expected " +
                     std::to_string(pos) + (t.begin < pos ? " (tensors overlap)" : " (gap between tensors)"));
            pos = t.end;
        }
        if (pos != data_size_)
            fail("tensors cover " + std::to_string(pos) + " data bytes but the file holds " +
                 std::to_string(data_size_) + " (trailing bytes)");
    }

    std::string path_;
    mutable std::ifstream in_;
    std::uint64_t data_start_ = 0, data_size_ = 0;
    std::vector<TensorEntry> tensors_;
    std::map<std::string, std::string> metadata_;
};

// ---- Parameter stores -------------------------------------------------------------------------

/// Adds every parameter of store under its state-dict name (prefix + name), stored as `as`.
template <class T>
void add_params(SafetensorsWriter& w, const ParamStore<T>& store, DType as = dtype_of<T>(),
                const std::string& prefix = "") {
    for (const auto& info : store.infos())
        w.add(prefix + info.name, std::vector<std::int64_t>(info.dims.begin(), info.dims.end()),
              store.values() + info.offset, as);
}

/// Saves a store's parameter values (not its gradients), atomically.
template <class T>
void save_params(const ParamStore<T>& store, const std::string& path, DType as = dtype_of<T>(),
                 const std::map<std::string, std::string>& metadata = {}) {
    SafetensorsWriter w;
    add_params(w, store, as);
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);
    w.save(path);
}

struct LoadOptions {
    bool allow_extra = false;                  // ignore tensors the store has no parameter for
    std::vector<std::string> ignore_prefixes;  // tensors never counted as extra (e.g. "optimizer.")
    std::string prefix;                        // the store's names appear in the file as prefix + name
};

/// Fills store's parameter values from the file, matching by name and shape. Every parameter
/// must be present with its exact shape and a float dtype; a tensor with no parameter is an
/// error unless allowed. All checks run before any value is written, so a failed load leaves
/// the store as it was.
template <class T>
void load_params(ParamStore<T>& store, const SafetensorsFile& file, const LoadOptions& opt = {}) {
    std::vector<const TensorEntry*> matched;
    for (const auto& info : store.infos()) {
        const std::string name = opt.prefix + info.name;
        const std::vector<std::int64_t> want(info.dims.begin(), info.dims.end());
        const TensorEntry* t = file.find(name);
        if (!t) file.fail("missing tensor '" + name + "' (the model expects " + shape_string(want) + ")");
        if (t->shape != want)
            file.fail("tensor '" + name + "' has shape " + shape_string(t->shape) + ", the model expects " +
                      shape_string(want));
        if (!is_float_dtype(t->dtype))
            file.fail("tensor '" + name + "' has dtype " + dtype_name(t->dtype) +
                      ", which does not convert to floating point");
        matched.push_back(t);
    }
    if (!opt.allow_extra) {
        for (const auto& t : file.tensors()) {
            if (std::find(matched.begin(), matched.end(), &t) != matched.end()) continue;
            const bool ignored = std::any_of(opt.ignore_prefixes.begin(), opt.ignore_prefixes.end(),
                                             [&](const std::string& p) { return t.name.starts_with(p); });
            if (!ignored)
                file.fail("unexpected tensor '" + t.name +
                          "' that the model does not have (LoadOptions::allow_extra ignores it)");
        }
    }
    for (std::size_t i = 0; i < matched.size(); ++i) {
        const auto& info = store.infos()[i];
        file.read(matched[i]->name, store.values() + info.offset, info.size);
    }
}

template <class T>
void load_params(ParamStore<T>& store, const std::string& path, const LoadOptions& opt = {}) {
    load_params(store, SafetensorsFile(path), opt);
}

}  // namespace diffuse::io

#endif
