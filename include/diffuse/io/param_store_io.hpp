// Buffers laid out like a ParamStore (its values, an EMA of them, Adam's moments) in safetensors
// files: one tensor per parameter, named prefix + the parameter's state-dict name
// ("ema." + "unet.down.0.res.0.conv1.weight"), and the metadata lookup the weights and checkpoint
// readers share. Errors name the file and the tensor (SafetensorsFile::fail).
#ifndef DIFFUSE_IO_PARAM_STORE_IO_HPP
#define DIFFUSE_IO_PARAM_STORE_IO_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/io/safetensors.hpp"

namespace diffuse::io {

/// Adds one tensor per parameter of `store`, read from `buffer` (the store's layout), as prefix + name.
template <class T>
void add_store_buffer(SafetensorsWriter& w, const ParamStore<T>& store, const T* buffer, const std::string& prefix,
                      DType as = dtype_of<T>()) {
    for (const auto& info : store.infos())
        w.add(prefix + info.name, std::vector<std::int64_t>(info.dims.begin(), info.dims.end()), buffer + info.offset,
              as);
}

/// Reads tensors prefix + name into `buffer` (the store's layout). Every tensor is checked (present,
/// same shape, a float dtype) before anything is written; errors name the file and the tensor.
template <class T>
void read_store_buffer(const SafetensorsFile& f, const ParamStore<T>& store, T* buffer, const std::string& prefix) {
    std::vector<const TensorEntry*> found;
    for (const auto& info : store.infos()) {
        const std::string name = prefix + info.name;
        const std::vector<std::int64_t> want(info.dims.begin(), info.dims.end());
        const TensorEntry* t = f.find(name);
        if (!t) f.fail("missing tensor '" + name + "' (the model expects " + shape_string(want) + ")");
        if (t->shape != want)
            f.fail("tensor '" + name + "' has shape " + shape_string(t->shape) + ", the model expects " +
                   shape_string(want));
        if (!is_float_dtype(t->dtype))
            f.fail("tensor '" + name + "' has dtype " + dtype_name(t->dtype) + ", expected a float dtype");
        found.push_back(t);
    }
    for (std::size_t i = 0; i < found.size(); ++i) {
        const auto& info = store.infos()[i];
        f.read(found[i]->name, buffer + info.offset, info.size);
    }
}

/// A metadata value, or throws naming the file.
inline const std::string& metadata_at(const SafetensorsFile& f, const std::string& key) {
    const auto it = f.metadata().find(key);
    if (it == f.metadata().end()) f.fail("no '" + key + "' in __metadata__");
    return it->second;
}

}  // namespace diffuse::io

#endif
