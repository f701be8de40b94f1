#include "io/safetensors.h"

#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "io/nonfinite.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/fs.h"

namespace paft {

// safetensors data are little-endian and read/written here without byte swaps.
static_assert(std::endian::native == std::endian::little);

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes      = 100ull << 20;  // real headers are ~100 KB even for 70B models
constexpr int64_t  kParallelMinElements = 1 << 16;       // below this, starting threads costs more than it saves
constexpr uint64_t kWriteChunkElements  = 1 << 20;       // elements narrowed per write() call (2 MB of f16/bf16)

struct DTypeDesc {
    DType        dtype;
    const char * name;
    size_t       size;  // bytes per element
};

// Indexed by DType's value.
constexpr DTypeDesc kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

constexpr bool dtype_table_in_enum_order() {
    for (size_t i = 0; i < std::size(kDTypes); ++i)
        if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
    return true;
}
static_assert(dtype_table_in_enum_order());

std::optional<DType> parse_dtype(const std::string & name) {
    for (const DTypeDesc & d : kDTypes)
        if (name == d.name) return d.dtype;
    return std::nullopt;
}

// "[4, 8]". Built by hand: fmt::join over int64 trips a GCC 12 -Wstringop-overflow false positive.
std::string shape_str(const std::vector<int64_t> & shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

// Bytes taken by `shape` x `elem_size`; nullopt for a negative dimension or when the element
// count overflows int64 or the byte count overflows uint64.
std::optional<uint64_t> checked_bytes(const std::vector<int64_t> & shape, size_t elem_size) {
    if (std::any_of(shape.begin(), shape.end(), [](int64_t dim) { return dim < 0; })) return std::nullopt;
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;  // even if the rest would overflow
    uint64_t numel = 1;
    for (int64_t dim : shape)
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) return std::nullopt;
    uint64_t bytes = 0;
    if (numel > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, elem_size, &bytes)) return std::nullopt;
    return bytes;
}

// ---- reading ----------------------------------------------------------------------------

[[noreturn]] void fail_tensor(const std::string & path, const std::string & name, const std::string & what) {
    throw InputError(fmt::format("{}: tensor '{}': {}", path, name, what));
}

// A JSON integer >= 0 (nlohmann stores "-0" and the like as signed integers).
std::optional<uint64_t> as_u64(const json & value) {
    if (value.is_number_unsigned()) return value.get<uint64_t>();
    if (value.is_number_integer() && value.get<int64_t>() >= 0) return static_cast<uint64_t>(value.get<int64_t>());
    return std::nullopt;
}

DType parse_dtype_field(const std::string & path, const std::string & name, const json & value) {
    const std::optional<DType> dtype = value.is_string() ? parse_dtype(value.get<std::string>()) : std::nullopt;
    if (!dtype)
        fail_tensor(path, name,
                    fmt::format("unknown dtype {} (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                                json_snippet(value)));
    return *dtype;
}

std::vector<int64_t> parse_shape_field(const std::string & path, const std::string & name, const json & value) {
    const auto bad = [&] {
        fail_tensor(path, name, fmt::format("shape must be a list of non-negative integers, got {}", json_snippet(value)));
    };
    if (!value.is_array()) bad();
    std::vector<int64_t> shape;
    for (const json & dim : value) {
        const std::optional<uint64_t> d = as_u64(dim);
        if (!d || *d > static_cast<uint64_t>(INT64_MAX)) bad();
        shape.push_back(static_cast<int64_t>(*d));
    }
    return shape;
}

// Returns [begin, end) relative to the data section.
std::pair<uint64_t, uint64_t> parse_offsets_field(const std::string & path, const std::string & name,
                                                  const json & value) {
    const auto bad = [&] {
        fail_tensor(path, name,
                    fmt::format("data_offsets must be [begin, end] with 0 <= begin <= end, got {}", json_snippet(value)));
    };
    if (!value.is_array() || value.size() != 2) bad();
    const std::optional<uint64_t> begin = as_u64(value[0]);
    const std::optional<uint64_t> end   = as_u64(value[1]);
    if (!begin || !end || *begin > *end) bad();
    return {*begin, *end};
}

// One tensor entry of the header. `data_start` is the absolute offset of the data section,
// `data_size` its length in bytes.
TensorInfo parse_tensor_entry(const std::string & path, const std::string & name, const json & entry,
                              uint64_t data_start, uint64_t data_size) {
    if (!entry.is_object()) fail_tensor(path, name, fmt::format("entry must be a JSON object, got {}", json_snippet(entry)));
    for (const auto & field : entry.items())
        if (field.key() != "dtype" && field.key() != "shape" && field.key() != "data_offsets")
            fail_tensor(path, name, fmt::format("unknown field '{}'", field.key()));
    for (const char * field : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(field)) fail_tensor(path, name, fmt::format("missing field '{}'", field));

    TensorInfo info;
    info.name                 = name;
    info.dtype                = parse_dtype_field(path, name, entry["dtype"]);
    info.shape                = parse_shape_field(path, name, entry["shape"]);
    const auto [begin, end]   = parse_offsets_field(path, name, entry["data_offsets"]);
    const std::string typeful = fmt::format("shape {} x {}", shape_str(info.shape), dtype_name(info.dtype));

    const std::optional<uint64_t> need = checked_bytes(info.shape, dtype_size(info.dtype));
    if (!need) fail_tensor(path, name, typeful + " is too large");
    if (*need != end - begin)
        fail_tensor(path, name, fmt::format("{} needs {} bytes but data_offsets give {}", typeful, *need, end - begin));
    if (end > data_size)
        fail_tensor(path, name,
                    fmt::format("data_offsets [{}, {}] run past the end of the data section ({} bytes)", begin, end,
                                data_size));
    info.begin = data_start + begin;
    info.end   = data_start + end;
    return info;
}

std::map<std::string, std::string> parse_metadata(const std::string & path, const json & value) {
    const auto bad = [&] {
        throw InputError(
            fmt::format("{}: __metadata__ must map strings to strings, got {}", path, json_snippet(value)));
    };
    if (!value.is_object()) bad();
    std::map<std::string, std::string> metadata;
    for (const auto & item : value.items()) {
        if (!item.value().is_string()) bad();
        metadata[item.key()] = item.value().get<std::string>();
    }
    return metadata;
}

// Sorts by data offset and rejects two tensors sharing a byte, a gap between two, and bytes after
// the last: the reference reader (safetensors' Rust crate) requires the data section to be the
// tensors' bytes back to back in the order of their offsets, empty tensors included (each at the
// offset where the bytes before it end), and refuses a file with anything else in it.
void sort_and_check_layout(const std::string & path, std::vector<TensorInfo> & tensors, uint64_t data_start,
                           uint64_t data_size) {
    std::sort(tensors.begin(), tensors.end(), [](const TensorInfo & a, const TensorInfo & b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    const TensorInfo * prev = nullptr;  // ranges so far are disjoint and back to back
    for (const TensorInfo & t : tensors) {
        if (prev && t.begin < prev->end && t.begin != t.end)
            throw InputError(fmt::format("{}: tensors '{}' (data_offsets [{}, {}]) and '{}' ([{}, {}]) overlap", path,
                                         prev->name, prev->begin - data_start, prev->end - data_start, t.name,
                                         t.begin - data_start, t.end - data_start));
        const uint64_t expected = prev ? prev->end : data_start;
        if (t.begin != expected)
            throw InputError(fmt::format("{}: tensor '{}' starts at data offset {}, but the bytes before it end at {} "
                                         "(the data section must hold the tensors back to back)",
                                         path, t.name, t.begin - data_start, expected - data_start));
        prev = &t;
    }
    const uint64_t used = prev ? prev->end - data_start : 0;
    if (used != data_size)
        throw InputError(fmt::format("{}: {} bytes after the last tensor's data (the data section is {} bytes, the "
                                     "tensors hold {})",
                                     path, data_size - used, data_size, used));
}

struct Header {
    std::vector<TensorInfo>            tensors;
    std::map<std::string, std::string> metadata;
};

Header parse_header_json(const std::string & path, const uint8_t * file, size_t file_size) {
    uint64_t header_len = 0;
    std::memcpy(&header_len, file, sizeof header_len);
    const uint64_t room = file_size - 8;
    if (header_len > room)
        throw InputError(fmt::format("{}: header length {} runs past the end of the file ({} bytes)", path, header_len,
                                     file_size));
    if (header_len > kMaxHeaderBytes)
        throw InputError(fmt::format("{}: header length {} exceeds the limit of {} bytes", path, header_len,
                                     kMaxHeaderBytes));

    json root;
    try {
        check_json_depth(std::string_view(reinterpret_cast<const char *>(file) + 8, header_len), path + ": header");
        root = json::parse(file + 8, file + 8 + header_len);
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: header is not valid JSON: {}", path, e.what()));
    }
    if (!root.is_object()) throw InputError(fmt::format("{}: header must be a JSON object, got {}", path, json_snippet(root)));

    const uint64_t data_start = 8 + header_len;
    Header         header;
    for (const auto & item : root.items()) {
        if (item.key() == "__metadata__")
            header.metadata = parse_metadata(path, item.value());
        else
            header.tensors.push_back(parse_tensor_entry(path, item.key(), item.value(), data_start, room - header_len));
    }
    sort_and_check_layout(path, header.tensors, data_start, room - header_len);
    return header;
}

Header parse_header(const std::string & path, const uint8_t * file, size_t file_size) {
    try {
        return parse_header_json(path, file, file_size);
    } catch (const json::exception & e) {
        // The checks above test every type before reading it; this is a safety net so that no
        // nlohmann exception ever escapes as anything but InputError.
        throw InputError(fmt::format("{}: malformed header: {}", path, e.what()));
    }
}

struct Mapping {
    const uint8_t * data = nullptr;
    size_t          size = 0;
};

Mapping map_file(const std::string & path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
    struct stat st {};
    const bool   stat_ok = ::fstat(fd, &st) == 0;
    const bool   regular = stat_ok && S_ISREG(st.st_mode);
    const size_t size    = regular ? static_cast<size_t>(st.st_size) : 0;
    void *       map     = regular && size >= 8 ? ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    const int    error   = errno;  // of fstat or mmap, whichever failed
    ::close(fd);                   // the mapping stays valid without the descriptor

    if (!stat_ok) throw RuntimeFailure(fmt::format("cannot stat {}: {}", path, std::strerror(error)));
    if (!regular) throw InputError(fmt::format("{}: not a regular file", path));
    if (size < 8)
        throw InputError(fmt::format(
            "{}: file is {} bytes, too short for the 8-byte header length of a safetensors file", path, size));
    if (map == MAP_FAILED) throw RuntimeFailure(fmt::format("cannot map {}: {}", path, std::strerror(error)));
    return {static_cast<const uint8_t *>(map), size};
}

// Converts n elements of type Src at `src` (any alignment) to f32.
template <typename Src, typename Convert>
void convert_elements(const uint8_t * src, int64_t n, float * dst, Convert convert) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
        Src value;
        std::memcpy(&value, src + static_cast<size_t>(i) * sizeof(Src), sizeof(Src));
        dst[i] = convert(value);
    }
}

// Converts, then refuses non-finite values (io/nonfinite.h), counted after the conversion so that
// F64 values beyond f32's range count too.
void convert_to_f32(const SafetensorsFile & file, const TensorInfo & info, float * dst) {
    const uint8_t * src = file.bytes(info).data();
    const int64_t   n   = info.numel();
    switch (info.dtype) {
        case DType::F32: convert_elements<float>(src, n, dst, [](float v) { return v; }); break;
        case DType::F64: convert_elements<double>(src, n, dst, [](double v) { return static_cast<float>(v); }); break;
        case DType::F16: convert_elements<uint16_t>(src, n, dst, f16_to_f32); break;
        case DType::BF16: convert_elements<uint16_t>(src, n, dst, bf16_to_f32); break;
        default:
            fail_tensor(file.path(), info.name,
                        fmt::format("dtype {} cannot be read as f32 (expected F32, F16, BF16 or F64)",
                                    dtype_name(info.dtype)));
    }
    check_finite_input(count_nonfinite(dst, (size_t) n), file.path(), info.name);
}

void check_shape(const SafetensorsFile & file, const TensorInfo & info, const std::vector<int64_t> & shape) {
    if (info.shape != shape)
        fail_tensor(file.path(), info.name,
                    fmt::format("shape is {} but {} was expected", shape_str(info.shape), shape_str(shape)));
}

// Registers every tensor of files[file_id] in `index`; a name may live in one file only.
void add_to_index(const std::vector<std::shared_ptr<SafetensorsFile>> & files, size_t file_id,
                  std::map<std::string, std::pair<size_t, size_t>> & index) {
    const std::vector<TensorInfo> & tensors = files[file_id]->tensors();
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto [it, inserted] = index.emplace(tensors[i].name, std::make_pair(file_id, i));
        if (!inserted)
            throw InputError(fmt::format("tensor '{}' is in both {} and {}", tensors[i].name,
                                         files[it->second.first]->path(), files[file_id]->path()));
    }
}

bool path_exists(const std::string & path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

std::string join_path(const std::string & dir, const std::string & file) {
    return (std::filesystem::path(dir) / file).string();
}

// The weight_map of an index file as (tensor name, shard file name) pairs.
std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string & index_path) {
    json root;
    try {
        const std::string text = read_file(index_path);
        check_json_depth(text, index_path);
        root = json::parse(text);
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: not valid JSON: {}", index_path, e.what()));
    }
    const auto it = root.find("weight_map");  // end() also when root is not an object
    if (it == root.end() || !it->is_object())
        throw InputError(fmt::format("{}: expected a JSON object with a \"weight_map\" object", index_path));
    std::vector<std::pair<std::string, std::string>> weight_map;
    for (const auto & item : it->items()) {
        const std::string shard = item.value().is_string() ? item.value().get<std::string>() : "";
        // Shards live next to the index, as Hugging Face writes them; this also keeps a
        // hostile index from pointing anywhere else on disk.
        if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos)
            throw InputError(fmt::format("{}: weight_map entry for tensor '{}' must be a file name in the same "
                                         "folder, got {}",
                                         index_path, item.key(), json_snippet(item.value())));
        weight_map.emplace_back(item.key(), shard);
    }
    return weight_map;
}

// ---- writing ----------------------------------------------------------------------------

// Checks the tensors to write and returns each one's size in bytes.
std::vector<uint64_t> tensor_bytes(const std::string & path, const std::vector<TensorToWrite> & tensors) {
    std::vector<uint64_t> sizes;
    std::set<std::string> names;
    for (const TensorToWrite & t : tensors) {
        if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
            fail_tensor(path, t.name,
                        fmt::format("cannot write dtype {} (only F32, F16 and BF16)", dtype_name(t.dtype)));
        if (t.name == "__metadata__") fail_tensor(path, t.name, "the name is reserved for metadata");
        if (!names.insert(t.name).second) fail_tensor(path, t.name, "name given twice");
        const std::optional<uint64_t> bytes = checked_bytes(t.shape, dtype_size(t.dtype));
        if (!bytes) fail_tensor(path, t.name, fmt::format("invalid shape {}", shape_str(t.shape)));
        if (*bytes > 0 && t.data == nullptr) fail_tensor(path, t.name, "no data");
        sizes.push_back(*bytes);
    }
    return sizes;
}

// The JSON header, padded with spaces so that the data section starts 8-byte aligned.
std::string build_header(const std::string & path, const std::vector<TensorToWrite> & tensors,
                         const std::vector<uint64_t> & sizes, const std::map<std::string, std::string> & metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        header[tensors[i].name] = {
            {"dtype", dtype_name(tensors[i].dtype)},
            {"shape", tensors[i].shape},
            {"data_offsets", {offset, offset + sizes[i]}},
        };
        offset += sizes[i];
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::ordered_json::exception & e) {  // e.g. a name that is not UTF-8
        throw InputError(fmt::format("{}: cannot encode header: {}", path, e.what()));
    }
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');
    return text;
}

void write_tensor_data(const TensorToWrite & t, uint64_t bytes, const WriteChunk & write) {
    if (t.dtype == DType::F32) return write(t.data, bytes);
    uint16_t (*const narrow)(float) = t.dtype == DType::BF16 ? f32_to_bf16 : f32_to_f16;
    const uint64_t        numel     = bytes / sizeof(uint16_t);
    std::vector<uint16_t> buf(std::min(numel, kWriteChunkElements));
    for (uint64_t start = 0; start < numel; start += kWriteChunkElements) {
        const auto    n   = static_cast<int64_t>(std::min(kWriteChunkElements, numel - start));
        const float * src = t.data + start;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
        for (int64_t i = 0; i < n; ++i) buf[i] = narrow(src[i]);
        write(buf.data(), static_cast<size_t>(n) * sizeof(uint16_t));
    }
}

// Splits tensors, in order, into runs of at most max_bytes; a tensor larger than that gets a
// run of its own. Returns the index of each run's first tensor.
std::vector<size_t> shard_starts(const std::vector<uint64_t> & sizes, uint64_t max_bytes) {
    std::vector<size_t> starts;
    uint64_t            used = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        if (starts.empty() || used + sizes[i] > max_bytes) {
            starts.push_back(i);
            used = 0;
        }
        used += sizes[i];
    }
    return starts;
}

// A file left over from an earlier write in the other layout (single file vs shards + index)
// would make open_dir read stale weights.
void remove_stale(const std::string & path) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec) throw RuntimeFailure(fmt::format("cannot remove stale {}: {}", path, ec.message()));
}

}  // namespace

// ---- dtype and TensorInfo -------------------------------------------------------------------

const char * dtype_name(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }

size_t dtype_size(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }

int64_t TensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t dim : shape) n *= dim;
    return n;
}

// ---- SafetensorsFile ----------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string & path) : path_(path) {
    const Mapping mapping = map_file(path);
    map_                  = mapping.data;
    map_size_             = mapping.size;
    try {
        Header header = parse_header(path_, map_, map_size_);
        tensors_      = std::move(header.tensors);
        metadata_     = std::move(header.metadata);
    } catch (...) {
        ::munmap(const_cast<uint8_t *>(map_), map_size_);
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() { ::munmap(const_cast<uint8_t *>(map_), map_size_); }

const TensorInfo * SafetensorsFile::find(const std::string & name) const {
    const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const TensorInfo & t) { return t.name == name; });
    return it == tensors_.end() ? nullptr : &*it;
}

std::span<const uint8_t> SafetensorsFile::bytes(const TensorInfo & info) const {
    return {map_ + info.begin, static_cast<size_t>(info.end - info.begin)};
}

// ---- TensorStore --------------------------------------------------------------------------

TensorStore TensorStore::open_file(const std::string & path) {
    TensorStore store;
    store.source_ = path;
    store.files_.push_back(std::make_shared<SafetensorsFile>(path));
    add_to_index(store.files_, 0, store.index_);
    return store;
}

TensorStore TensorStore::open_dir(const std::string & dir, const std::string & prefix) {
    const std::string single = join_path(dir, prefix + ".safetensors");
    if (path_exists(single)) return open_file(single);
    const std::string index_path = join_path(dir, prefix + ".safetensors.index.json");
    if (!path_exists(index_path))
        throw InputError(fmt::format("no {0}.safetensors or {0}.safetensors.index.json in {1}", prefix, dir));

    const auto  weight_map = read_weight_map(index_path);
    TensorStore store;
    store.source_ = index_path;
    std::map<std::string, size_t> shard_ids;  // shard file name -> position in files_
    for (const auto & [name, shard] : weight_map) {
        if (shard_ids.contains(shard)) continue;
        const std::string shard_path = join_path(dir, shard);
        if (!path_exists(shard_path))
            throw InputError(fmt::format("{}: tensor '{}' is in shard {}, which does not exist", index_path, name,
                                         shard_path));
        shard_ids[shard] = store.files_.size();
        store.files_.push_back(std::make_shared<SafetensorsFile>(shard_path));
        add_to_index(store.files_, store.files_.size() - 1, store.index_);
    }
    for (const auto & [name, shard] : weight_map) {
        const auto it = store.index_.find(name);
        if (it == store.index_.end() || it->second.first != shard_ids.at(shard))
            throw InputError(fmt::format("{}: weight_map puts tensor '{}' in shard {}, which has no such tensor",
                                         index_path, name, shard));
    }
    return store;
}

bool TensorStore::has(const std::string & name) const { return index_.contains(name); }

const TensorInfo & TensorStore::info(const std::string & name) const {
    const TensorInfo * info = nullptr;
    file_of(name, &info);
    return *info;
}

std::vector<std::string> TensorStore::names() const {
    std::vector<std::string> names;
    names.reserve(index_.size());
    for (const auto & item : index_) names.push_back(item.first);
    return names;
}

const SafetensorsFile & TensorStore::file_of(const std::string & name, const TensorInfo ** info) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw InputError(fmt::format("tensor '{}' not found in {}", name, source_));
    const SafetensorsFile & file = *files_[it->second.first];
    *info                        = &file.tensors()[it->second.second];
    return file;
}

void TensorStore::expect_shape(const std::string & name, const std::vector<int64_t> & shape) const {
    const TensorInfo *      info = nullptr;
    const SafetensorsFile & file = file_of(name, &info);
    check_shape(file, *info, shape);
}

void TensorStore::read_f32(const std::string & name, const std::vector<int64_t> & shape, float * dst) const {
    const TensorInfo *      info = nullptr;
    const SafetensorsFile & file = file_of(name, &info);
    check_shape(file, *info, shape);
    convert_to_f32(file, *info, dst);
}

std::vector<float> TensorStore::read_f32(const std::string & name, const std::vector<int64_t> & shape) const {
    const TensorInfo *      info = nullptr;
    const SafetensorsFile & file = file_of(name, &info);
    check_shape(file, *info, shape);  // before allocating, in case the file's shape is absurd
    std::vector<float> out(static_cast<size_t>(info->numel()));
    convert_to_f32(file, *info, out.data());
    return out;
}

std::vector<float> TensorStore::read_f32_any(const std::string & name, std::vector<int64_t> * shape) const {
    const TensorInfo *      info = nullptr;
    const SafetensorsFile & file = file_of(name, &info);
    std::vector<float>      out(static_cast<size_t>(info->numel()));
    convert_to_f32(file, *info, out.data());
    if (shape) *shape = info->shape;
    return out;
}

std::span<const uint8_t> TensorStore::bytes(const std::string & name) const {
    const TensorInfo *             info  = nullptr;
    const SafetensorsFile &        file  = file_of(name, &info);
    const std::span<const uint8_t> bytes = file.bytes(*info);
    check_finite_input(count_nonfinite(info->dtype, bytes), file.path(), name);
    return bytes;
}

void TensorStore::release(const std::string & name) const {
    const TensorInfo *             info = nullptr;
    const std::span<const uint8_t> span = file_of(name, &info).bytes(*info);
    const uintptr_t page  = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(span.data()) + page - 1) / page * page;
    const uintptr_t end   = (reinterpret_cast<uintptr_t>(span.data()) + span.size()) / page * page;
    // Only whole pages inside the tensor: a neighbour may still be in use. Advice only: a
    // failure just leaves the pages mapped.
    if (end > begin) ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}

// ---- writing ------------------------------------------------------------------------------

ShardedWriter::ShardedWriter(const std::string & dir, const std::string & prefix, std::vector<Entry> entries,
                             uint64_t max_shard_bytes, const std::map<std::string, std::string> & metadata)
    : dir_(dir), prefix_(prefix), entries_(std::move(entries)) {
    make_dirs(dir_);
    // The same checks and header as write_safetensors, over entries without data.
    std::vector<TensorToWrite> tensors;
    static const float         kNoData = 0.0f;
    for (const Entry & e : entries_) tensors.push_back({e.name, e.shape, &kNoData, e.dtype});
    const std::vector<uint64_t> sizes = tensor_bytes(join_path(dir_, prefix_ + ".safetensors"), tensors);
    for (uint64_t size : sizes) total_ += size;
    std::vector<size_t> starts = shard_starts(sizes, total_ <= max_shard_bytes ? UINT64_MAX : max_shard_bytes);
    const size_t        count  = starts.size();
    starts.push_back(entries_.size());
    places_.resize(entries_.size());
    for (size_t s = 0; s < count; ++s) {
        const std::string name = count == 1 ? prefix_ + ".safetensors"
                                            : fmt::format("{}-{:05d}-of-{:05d}.safetensors", prefix_, s + 1, count);
        const std::string path = join_path(dir_, name);
        const std::vector<TensorToWrite> part(tensors.begin() + static_cast<ptrdiff_t>(starts[s]),
                                              tensors.begin() + static_cast<ptrdiff_t>(starts[s + 1]));
        const std::vector<uint64_t> part_sizes(sizes.begin() + static_cast<ptrdiff_t>(starts[s]),
                                               sizes.begin() + static_cast<ptrdiff_t>(starts[s + 1]));
        const std::string header     = build_header(path, part, part_sizes, metadata);
        const uint64_t    header_len = header.size();
        uint64_t          offset     = sizeof header_len + header_len;
        for (size_t i = starts[s]; i < starts[s + 1]; ++i) {
            places_[i] = {s, offset, sizes[i]};
            offset += sizes[i];
        }
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw RuntimeFailure(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
        fds_.push_back(fd);
        files_.push_back(name);
        if (::ftruncate(fd, static_cast<off_t>(offset)) != 0)
            throw RuntimeFailure(fmt::format("cannot size {} to {} bytes: {}", path, offset, std::strerror(errno)));
        std::string head(reinterpret_cast<const char *>(&header_len), sizeof header_len);
        head += header;
        pwrite_all(starts[s] < entries_.size() ? starts[s] : 0, head.data(), head.size(), 0);
    }
}

ShardedWriter::~ShardedWriter() {
    for (int fd : fds_)
        if (fd >= 0) ::close(fd);
}

// Writes `size` bytes at file offset `at` of the shard holding entry `index`.
void ShardedWriter::pwrite_all(size_t index, const void * data, uint64_t size, uint64_t at) {
    const int       fd  = fds_.at(places_.empty() ? 0 : places_[index].file);
    const uint8_t * src = static_cast<const uint8_t *>(data);
    while (size > 0) {
        const ssize_t done = ::pwrite(fd, src, std::min<uint64_t>(size, 1u << 30), static_cast<off_t>(at));
        if (done < 0 && errno == EINTR) continue;
        if (done <= 0)
            throw RuntimeFailure(fmt::format("cannot write {}: {}", join_path(dir_, files_.at(places_[index].file)),
                                             done < 0 ? std::strerror(errno) : "no space written"));
        src += done;
        at += static_cast<uint64_t>(done);
        size -= static_cast<uint64_t>(done);
    }
}

void ShardedWriter::write_f32(size_t index, const float * data) {
    const Entry &  e     = entries_.at(index);
    const Place &  place = places_[index];
    if (e.dtype == DType::F32) return pwrite_all(index, data, place.bytes, place.offset);
    uint16_t (*const narrow)(float) = e.dtype == DType::BF16 ? f32_to_bf16 : f32_to_f16;
    const uint64_t        numel     = place.bytes / sizeof(uint16_t);
    std::vector<uint16_t> buf(std::min(numel, kWriteChunkElements));
    for (uint64_t start = 0; start < numel; start += kWriteChunkElements) {
        const uint64_t n = std::min(kWriteChunkElements, numel - start);
        for (uint64_t i = 0; i < n; ++i) buf[i] = narrow(data[start + i]);
        pwrite_all(index, buf.data(), n * sizeof(uint16_t), place.offset + start * sizeof(uint16_t));
    }
}

void ShardedWriter::write_raw(size_t index, const uint8_t * data, size_t size) {
    const Place & place = places_.at(index);
    if (size != place.bytes)
        throw std::logic_error(fmt::format("ShardedWriter: {} bytes given for '{}', which takes {}", size,
                                           entries_[index].name, place.bytes));
    pwrite_all(index, data, size, place.offset);
}

void ShardedWriter::finish() {
    for (size_t f = 0; f < fds_.size(); ++f) {
        if (::fsync(fds_[f]) != 0 || ::close(fds_[f]) != 0) {
            fds_[f] = -1;
            throw RuntimeFailure(fmt::format("cannot write {}: {}", join_path(dir_, files_[f]), std::strerror(errno)));
        }
        fds_[f] = -1;
    }
    if (files_.size() > 1) {
        json weight_map = json::object();
        for (size_t i = 0; i < entries_.size(); ++i) weight_map[entries_[i].name] = files_[places_[i].file];
        const json index = {{"metadata", {{"total_size", total_}}}, {"weight_map", weight_map}};
        write_file_atomic(join_path(dir_, prefix_ + ".safetensors.index.json"), index.dump(2) + "\n");
    }
}

void write_safetensors(const std::string & path, const std::vector<TensorToWrite> & tensors,
                       const std::map<std::string, std::string> & metadata) {
    const std::vector<uint64_t> sizes  = tensor_bytes(path, tensors);
    const std::string           header = build_header(path, tensors, sizes, metadata);
    write_file_atomic_stream(path, [&](const WriteChunk & write) {
        const uint64_t header_len = header.size();
        write(&header_len, sizeof header_len);
        write(header.data(), header.size());
        for (size_t i = 0; i < tensors.size(); ++i) write_tensor_data(tensors[i], sizes[i], write);
    });
}

void write_safetensors_sharded(const std::string & dir, const std::string & prefix,
                               const std::vector<TensorToWrite> & tensors, uint64_t max_shard_bytes,
                               const std::map<std::string, std::string> & metadata) {
    make_dirs(dir);
    const std::string           single     = join_path(dir, prefix + ".safetensors");
    const std::string           index_path = join_path(dir, prefix + ".safetensors.index.json");
    const std::vector<uint64_t> sizes      = tensor_bytes(single, tensors);
    uint64_t                    total      = 0;
    for (uint64_t size : sizes) total += size;

    if (total <= max_shard_bytes) {
        write_safetensors(single, tensors, metadata);
        remove_stale(index_path);
        return;
    }
    std::vector<size_t> starts = shard_starts(sizes, max_shard_bytes);
    const size_t        count  = starts.size();
    starts.push_back(tensors.size());
    json weight_map = json::object();
    for (size_t s = 0; s < count; ++s) {
        const std::string file = fmt::format("{}-{:05d}-of-{:05d}.safetensors", prefix, s + 1, count);
        const std::vector<TensorToWrite> part(tensors.begin() + static_cast<ptrdiff_t>(starts[s]),
                                              tensors.begin() + static_cast<ptrdiff_t>(starts[s + 1]));
        write_safetensors(join_path(dir, file), part, metadata);
        for (const TensorToWrite & t : part) weight_map[t.name] = file;
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic(index_path, index.dump(2) + "\n");
    remove_stale(single);
}

}  // namespace paft
