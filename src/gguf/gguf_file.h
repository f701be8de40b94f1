// GGUF files (version 3), llama.cpp's single-file format: a header of typed key/value metadata
// and tensor descriptions, then the tensors' data, each at an offset aligned to
// general.alignment (32 by default).
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count; each
// key/value: string key, u32 value type, value (a string is u64 length + bytes; an array is u32
// element type + u64 count + elements); each tensor: string name, u32 n_dims, u64 dims[n_dims]
// (innermost first: a PyTorch [out, in] weight has dims (in, out)), u32 ggml type, u64 offset from
// the start of the data section; padding; the data section.
#pragma once

#include "tensor/quants.h"

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace paft {

// GGUF's metadata value types (the numbers the file stores).
enum class GgufValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
    U64 = 10, I64 = 11, F64 = 12,
};

// One metadata value. Scalars keep their GGUF type; arrays hold one element type.
struct GgufValue {
    GgufValueType type = GgufValueType::U32;
    GgufValueType element_type = GgufValueType::U32;  // for ARRAY
    // Integers of every width and bools are held as int64 (U64 above 2^63 is not used by GGUF
    // metadata in practice); F32 and F64 as double; strings as text.
    std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>, std::vector<std::string>>
        value;

    int64_t                          as_int() const;     // an integer or bool scalar
    double                           as_number() const;  // any numeric scalar
    const std::string &              as_string() const;
    const std::vector<std::string> & as_strings() const;  // an array of strings
    const std::vector<int64_t> &     as_ints() const;     // an array of integers
    const std::vector<double> &      as_numbers() const;  // an array of floats
    size_t                           array_size() const;
};

struct GgufTensorInfo {
    std::string          name;
    std::vector<int64_t> shape;  // outermost first, as PyTorch writes it ([out, in] for a weight)
    GgmlType             type = GgmlType::F32;
    uint64_t             offset = 0;  // from the start of the data section
    uint64_t             bytes  = 0;
    int64_t              numel() const;
    int64_t              row_length() const { return shape.empty() ? 1 : shape.back(); }  // innermost dim
};

// Builds a GGUF file: metadata in the order set, tensors in the order added, then write() streams
// every tensor's data from a callback, so a model never has to be held in memory.
class GgufWriter {
public:
    void set_u32(const std::string & key, uint32_t v);
    void set_i32(const std::string & key, int32_t v);
    void set_u64(const std::string & key, uint64_t v);
    void set_f32(const std::string & key, float v);
    void set_bool(const std::string & key, bool v);
    void set_string(const std::string & key, const std::string & v);
    void set_strings(const std::string & key, const std::vector<std::string> & v);
    void set_f32s(const std::string & key, const std::vector<float> & v);
    void set_i32s(const std::string & key, const std::vector<int32_t> & v);

    // Declares a tensor (shape outermost first). Its data size follows from the shape and type;
    // the innermost dim must be a multiple of the type's block size. Returns its index.
    size_t add_tensor(const std::string & name, const std::vector<int64_t> & shape, GgmlType type);
    const std::vector<GgufTensorInfo> & tensors() const { return tensors_; }
    uint64_t                            data_bytes() const { return data_bytes_; }

    // Writes the file atomically (temporary file in the same folder, fsync, rename; removed on
    // failure). For each tensor in order, produce(index, write) must pass exactly the tensor's
    // bytes to write(), in as many pieces as it likes. RuntimeFailure on I/O errors.
    using WriteBytes = std::function<void(const void * data, size_t size)>;
    void write(const std::string & path, const std::function<void(size_t index, const WriteBytes & write)> & produce) const;

private:
    struct Entry {
        std::string key;
        std::string encoded;  // value type and value, as the file stores them
    };
    std::vector<Entry>          kv_;
    std::vector<GgufTensorInfo> tensors_;
    uint64_t                    data_bytes_ = 0;
    uint32_t                    alignment_  = 32;
    void                        set(const std::string & key, std::string encoded);
    // An array of fixed-size numbers, their little-endian bytes at `data`.
    void set_numbers(const std::string & key, GgufValueType element_type, const void * data, size_t count,
                     size_t element_size);
};

// A GGUF file, memory-mapped read-only. The constructor validates the header (magic, version 2 or
// 3, value types, string and array lengths inside the file, tensor types, sizes and offsets inside
// the data section) and throws InputError naming the file and the key or tensor otherwise.
class GgufFile {
public:
    explicit GgufFile(const std::string & path);
    ~GgufFile();
    GgufFile(const GgufFile &)             = delete;
    GgufFile & operator=(const GgufFile &) = delete;

    const std::string &                      path() const { return path_; }
    uint32_t                                 version() const { return version_; }
    const std::map<std::string, GgufValue> & metadata() const { return kv_; }
    const std::vector<std::string> &         keys() const { return key_order_; }  // as stored
    bool                                     has(const std::string & key) const { return kv_.count(key) > 0; }
    const GgufValue &                        at(const std::string & key) const;  // InputError if absent
    const std::vector<GgufTensorInfo> &      tensors() const { return tensors_; }
    const GgufTensorInfo *                   find(const std::string & name) const;  // nullptr if absent
    std::span<const uint8_t>                 bytes(const GgufTensorInfo & info) const;
    // The tensor's values as f32 (dequantized when quantized).
    std::vector<float>                       read_f32(const GgufTensorInfo & info) const;

private:
    std::string                      path_;
    const uint8_t *                  map_      = nullptr;
    size_t                           map_size_ = 0;
    uint32_t                         version_  = 0;
    uint64_t                         data_start_ = 0;
    std::map<std::string, GgufValue> kv_;
    std::vector<std::string>         key_order_;
    std::vector<GgufTensorInfo>      tensors_;
};

}  // namespace paft
