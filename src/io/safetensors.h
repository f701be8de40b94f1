// safetensors files: memory-mapped, validated reading and atomic (optionally sharded) writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the start of the data section.
#pragma once

#include "tensor/half.h"

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace paft {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char * dtype_name(DType dtype);  // "F32", "BF16", ...
size_t       dtype_size(DType dtype);  // bytes per element

struct TensorInfo {
    std::string          name;
    DType                dtype;
    std::vector<int64_t> shape;
    uint64_t             begin = 0;  // byte offset of the first element, from the start of the file
    uint64_t             end   = 0;  // one past the last byte, from the start of the file
    int64_t numel() const;
};

// One .safetensors file, memory-mapped read-only. The constructor validates the whole header
// (length, JSON, dtypes, shape x dtype size == byte range, ranges inside the file and not
// overlapping) and throws InputError naming the file (and the tensor) on any problem.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::string & path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile &)             = delete;
    SafetensorsFile & operator=(const SafetensorsFile &) = delete;

    const std::string &                        path() const { return path_; }
    const std::vector<TensorInfo> &            tensors() const { return tensors_; }  // by data offset
    const std::map<std::string, std::string> & metadata() const { return metadata_; }
    const TensorInfo *                         find(const std::string & name) const;  // nullptr if absent
    std::span<const uint8_t>                   bytes(const TensorInfo & info) const;

private:
    std::string                        path_;
    const uint8_t *                    map_      = nullptr;
    size_t                             map_size_ = 0;
    std::vector<TensorInfo>            tensors_;
    std::map<std::string, std::string> metadata_;
};

// The tensors of a model or adapter directory: either one file or shards listed by an index
// ("weight_map" in <prefix>.safetensors.index.json). Names are unique across shards.
class TensorStore {
public:
    // Opens <dir>/<prefix>.safetensors, or <dir>/<prefix>.safetensors.index.json and its shards.
    static TensorStore open_dir(const std::string & dir, const std::string & prefix = "model");
    // Opens a single file.
    static TensorStore open_file(const std::string & path);

    bool                     has(const std::string & name) const;
    const TensorInfo &       info(const std::string & name) const;  // InputError if missing
    std::vector<std::string> names() const;                         // sorted

    // InputError naming the file and the tensor when `name` is missing or its shape is not `shape`.
    void expect_shape(const std::string & name, const std::vector<int64_t> & shape) const;

    // Converts tensor `name` (F32, F16, BF16 or F64) to f32 into dst after checking that its
    // shape equals `shape`. InputError naming the file and the tensor otherwise.
    void read_f32(const std::string & name, const std::vector<int64_t> & shape, float * dst) const;
    std::vector<float> read_f32(const std::string & name, const std::vector<int64_t> & shape) const;
    // Any float tensor as f32 whatever its shape; the shape is returned through `shape`.
    std::vector<float> read_f32_any(const std::string & name, std::vector<int64_t> * shape) const;
    // The stored bytes of tensor `name` (its dtype's little-endian layout), inside the mapping.
    // Both this and read_f32* refuse a float tensor with NaN or Inf values (io/nonfinite.h).
    std::span<const uint8_t> bytes(const std::string & name) const;
    // Drops the tensor's pages from this process's mapping (the page cache keeps them), so a
    // pass over a whole model does not grow the resident set by the model's size.
    void release(const std::string & name) const;

private:
    std::vector<std::shared_ptr<SafetensorsFile>> files_;
    std::map<std::string, std::pair<size_t, size_t>> index_;  // name -> (file, tensor index)
    std::string source_;  // the file or index that error messages name
    const SafetensorsFile & file_of(const std::string & name, const TensorInfo ** info) const;
};

// A tensor to write: f32 values in memory, stored as `dtype` (F32, F16 or BF16; round to
// nearest even on narrowing).
struct TensorToWrite {
    std::string          name;
    std::vector<int64_t> shape;
    const float *        data;
    DType                dtype = DType::F32;
};

// Writes one file atomically (temporary file in the same folder, fsync, rename).
// Tensors are stored in the order given.
void write_safetensors(const std::string & path, const std::vector<TensorToWrite> & tensors,
                       const std::map<std::string, std::string> & metadata = {});

// Writes <dir>/<prefix>.safetensors, or, when the data exceed max_shard_bytes,
// <prefix>-0000i-of-0000n.safetensors shards plus <prefix>.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {name: shard file}}), each atomically.
void write_safetensors_sharded(const std::string & dir, const std::string & prefix,
                               const std::vector<TensorToWrite> & tensors, uint64_t max_shard_bytes,
                               const std::map<std::string, std::string> & metadata = {});

// Sharded safetensors written tensor by tensor, in any order and from several threads at once:
// the layout (each tensor's shard and offset) is fixed up front from the names, shapes and dtypes,
// so a tensor is written in place (pwrite) as soon as it exists and nothing is buffered.
// Shards as write_safetensors_sharded names them. The files are not written atomically: write
// into a temporary folder and rename the folder when done.
class ShardedWriter {
public:
    struct Entry {
        std::string          name;
        std::vector<int64_t> shape;
        DType                dtype = DType::F32;  // F32, F16 or BF16
    };
    // Creates the files (headers written, data areas sized). RuntimeFailure on I/O errors.
    ShardedWriter(const std::string & dir, const std::string & prefix, std::vector<Entry> entries,
                  uint64_t max_shard_bytes, const std::map<std::string, std::string> & metadata = {});
    ~ShardedWriter();
    ShardedWriter(const ShardedWriter &)             = delete;
    ShardedWriter & operator=(const ShardedWriter &) = delete;

    const std::vector<Entry> & entries() const { return entries_; }
    // Entry `index` from n = numel f32 values, narrowed to its dtype (round to nearest even).
    void write_f32(size_t index, const float * data);
    // Entry `index` from bytes already in its dtype (size must be its byte size).
    void write_raw(size_t index, const uint8_t * data, size_t size);
    // fsyncs the shards, writes the index (when sharded) and closes the files.
    void     finish();
    uint64_t total_bytes() const { return total_; }
    size_t   shard_count() const { return files_.size(); }

private:
    struct Place {
        size_t   file;
        uint64_t offset, bytes;  // from the start of the file
    };
    std::string              dir_, prefix_;
    std::vector<Entry>       entries_;
    std::vector<Place>       places_;
    std::vector<int>         fds_;
    std::vector<std::string> files_;
    uint64_t                 total_ = 0;
    void pwrite_all(size_t index, const void * data, uint64_t size, uint64_t at);
};

}  // namespace paft
