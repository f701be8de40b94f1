#include "gguf/gguf_file.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/nonfinite.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <limits>

namespace paft {

namespace {

constexpr uint32_t kMagic   = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kVersion = 3;

template <class T> void put(std::string & out, T v) { out.append(reinterpret_cast<const char *>(&v), sizeof v); }

void put_string(std::string & out, const std::string & s) {
    put<uint64_t>(out, s.size());
    out += s;
}

size_t scalar_size(GgufValueType t) {
    switch (t) {
        case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
        case GgufValueType::U16: case GgufValueType::I16: return 2;
        case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
        case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
        default: return 0;  // STRING, ARRAY: variable
    }
}

const char * value_type_name(GgufValueType t) {
    static const char * names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    const auto i = static_cast<uint32_t>(t);
    return i < std::size(names) ? names[i] : "unknown";
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

// ---- values ----

int64_t GgufValue::as_int() const {
    if (const auto * v = std::get_if<int64_t>(&value); v && type != GgufValueType::ARRAY) return *v;
    throw InputError(fmt::format("a GGUF value of type {} is not an integer", value_type_name(type)));
}
double GgufValue::as_number() const {
    if (type == GgufValueType::ARRAY) throw InputError("a GGUF array is not a number");
    if (const auto * v = std::get_if<double>(&value)) return *v;
    if (const auto * v = std::get_if<int64_t>(&value)) return (double) *v;
    throw InputError(fmt::format("a GGUF value of type {} is not a number", value_type_name(type)));
}
const std::string & GgufValue::as_string() const {
    if (const auto * v = std::get_if<std::string>(&value)) return *v;
    throw InputError(fmt::format("a GGUF value of type {} is not a string", value_type_name(type)));
}
const std::vector<std::string> & GgufValue::as_strings() const {
    if (const auto * v = std::get_if<std::vector<std::string>>(&value)) return *v;
    throw InputError("a GGUF value is not an array of strings");
}
const std::vector<int64_t> & GgufValue::as_ints() const {
    if (const auto * v = std::get_if<std::vector<int64_t>>(&value)) return *v;
    throw InputError("a GGUF value is not an array of integers");
}
const std::vector<double> & GgufValue::as_numbers() const {
    if (const auto * v = std::get_if<std::vector<double>>(&value)) return *v;
    throw InputError("a GGUF value is not an array of floats");
}
size_t GgufValue::array_size() const {
    return std::visit(
        [](const auto & v) -> size_t {
            if constexpr (requires { v.size(); } && !std::is_same_v<std::decay_t<decltype(v)>, std::string>) return v.size();
            return 0;
        },
        value);
}

int64_t GgufTensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// ---- writer ----

void GgufWriter::set(const std::string & key, std::string encoded) {
    for (Entry & e : kv_) {
        if (e.key == key) {
            e.encoded = std::move(encoded);
            return;
        }
    }
    kv_.push_back({key, std::move(encoded)});
}

#define PAFT_GGUF_SCALAR(fn, T, tag)                                  \
    void GgufWriter::fn(const std::string & key, T v) {               \
        std::string e;                                                \
        put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::tag)); \
        put<T>(e, v);                                                 \
        set(key, std::move(e));                                       \
    }
PAFT_GGUF_SCALAR(set_u32, uint32_t, U32)
PAFT_GGUF_SCALAR(set_i32, int32_t, I32)
PAFT_GGUF_SCALAR(set_u64, uint64_t, U64)
PAFT_GGUF_SCALAR(set_f32, float, F32)
#undef PAFT_GGUF_SCALAR

void GgufWriter::set_bool(const std::string & key, bool v) {
    std::string e;
    put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::BOOL));
    put<uint8_t>(e, v ? 1 : 0);
    set(key, std::move(e));
}

void GgufWriter::set_string(const std::string & key, const std::string & v) {
    std::string e;
    put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::STRING));
    put_string(e, v);
    set(key, std::move(e));
}

void GgufWriter::set_strings(const std::string & key, const std::vector<std::string> & v) {
    std::string e;
    put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::ARRAY));
    put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::STRING));
    put<uint64_t>(e, v.size());
    for (const std::string & s : v) put_string(e, s);
    set(key, std::move(e));
}

void GgufWriter::set_numbers(const std::string & key, GgufValueType element_type, const void * data, size_t count,
                             size_t element_size) {
    std::string e;
    put<uint32_t>(e, static_cast<uint32_t>(GgufValueType::ARRAY));
    put<uint32_t>(e, static_cast<uint32_t>(element_type));
    put<uint64_t>(e, count);
    e.append(static_cast<const char *>(data), count * element_size);
    set(key, std::move(e));
}

void GgufWriter::set_f32s(const std::string & key, const std::vector<float> & v) {
    set_numbers(key, GgufValueType::F32, v.data(), v.size(), sizeof(float));
}

void GgufWriter::set_i32s(const std::string & key, const std::vector<int32_t> & v) {
    set_numbers(key, GgufValueType::I32, v.data(), v.size(), sizeof(int32_t));
}

size_t GgufWriter::add_tensor(const std::string & name, const std::vector<int64_t> & shape, GgmlType type) {
    for (const GgufTensorInfo & t : tensors_) {
        if (t.name == name) throw std::logic_error("GGUF tensor added twice: " + name);
    }
    GgufTensorInfo info;
    info.name  = name;
    info.shape = shape;
    info.type  = type;
    const int64_t n = info.row_length();
    if (n % ggml_block_size(type) != 0) {
        throw InputError(fmt::format("tensor {}: rows of {} values cannot be stored as {} (blocks of {})", name, n,
                                     ggml_type_name(type), ggml_block_size(type)));
    }
    info.bytes  = (uint64_t) ggml_row_bytes(type, n) * (uint64_t) (info.numel() / std::max<int64_t>(n, 1));
    info.offset = align_up(data_bytes_, alignment_);
    data_bytes_ = info.offset + info.bytes;
    tensors_.push_back(std::move(info));
    return tensors_.size() - 1;
}

void GgufWriter::write(const std::string & path,
                       const std::function<void(size_t index, const WriteBytes & write)> & produce) const {
    std::string header;
    put<uint32_t>(header, kMagic);
    put<uint32_t>(header, kVersion);
    put<uint64_t>(header, tensors_.size());
    put<uint64_t>(header, kv_.size());
    for (const Entry & e : kv_) {
        put_string(header, e.key);
        header += e.encoded;
    }
    for (const GgufTensorInfo & t : tensors_) {
        put_string(header, t.name);
        put<uint32_t>(header, (uint32_t) t.shape.size());
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(header, (uint64_t) *it);
        put<uint32_t>(header, static_cast<uint32_t>(t.type));
        put<uint64_t>(header, t.offset);
    }
    header.resize(align_up(header.size(), alignment_), '\0');

    write_file_atomic_stream(path, [&](const WriteChunk & out) {
        // Data arrive in pieces of any size; gather them into large writes.
        std::string buffer;
        buffer.reserve(8u << 20);
        auto emit = [&](const void * data, size_t size) {
            if (buffer.size() + size > buffer.capacity()) {
                out(buffer.data(), buffer.size());
                buffer.clear();
            }
            if (size >= buffer.capacity()) {
                out(data, size);
            } else {
                buffer.append(static_cast<const char *>(data), size);
            }
        };
        emit(header.data(), header.size());
        uint64_t written = 0;  // bytes of the data section so far
        const std::string zeros(alignment_, '\0');
        for (size_t i = 0; i < tensors_.size(); i++) {
            const GgufTensorInfo & t = tensors_[i];
            emit(zeros.data(), t.offset - written);
            uint64_t got = 0;
            produce(i, [&](const void * data, size_t size) {
                if (got + size > t.bytes) {
                    throw std::logic_error(fmt::format("GGUF tensor {}: more than its {} bytes produced", t.name, t.bytes));
                }
                got += size;
                emit(data, size);
            });
            if (got != t.bytes) {
                throw std::logic_error(fmt::format("GGUF tensor {}: {} of its {} bytes produced", t.name, got, t.bytes));
            }
            written = t.offset + t.bytes;
        }
        if (!buffer.empty()) out(buffer.data(), buffer.size());
    });
}

// ---- reader ----

namespace {

// Bounds-checked cursor over the mapped header.
class Cursor {
public:
    Cursor(const uint8_t * data, size_t size, const std::string & path) : p_(data), end_(data + size), path_(path) {}
    template <class T> T get(const char * what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_, sizeof v);
        p_ += sizeof v;
        return v;
    }
    std::string string(const char * what) {
        const uint64_t n = get<uint64_t>(what);
        need(n, what);
        std::string s(reinterpret_cast<const char *>(p_), n);
        p_ += n;
        return s;
    }
    void need(uint64_t n, const char * what) const {
        if (n > (uint64_t) (end_ - p_)) {
            throw InputError(fmt::format("{}: truncated GGUF header (reading {})", path_, what));
        }
    }
    size_t offset(const uint8_t * base) const { return (size_t) (p_ - base); }

private:
    const uint8_t *     p_;
    const uint8_t *     end_;
    const std::string & path_;
};

int64_t read_int(Cursor & c, GgufValueType t, const char * what) {
    switch (t) {
        case GgufValueType::U8: return c.get<uint8_t>(what);
        case GgufValueType::I8: return c.get<int8_t>(what);
        case GgufValueType::BOOL: return c.get<uint8_t>(what) != 0;
        case GgufValueType::U16: return c.get<uint16_t>(what);
        case GgufValueType::I16: return c.get<int16_t>(what);
        case GgufValueType::U32: return c.get<uint32_t>(what);
        case GgufValueType::I32: return c.get<int32_t>(what);
        case GgufValueType::U64: return (int64_t) c.get<uint64_t>(what);
        case GgufValueType::I64: return c.get<int64_t>(what);
        default: return 0;
    }
}

bool is_int_type(GgufValueType t) {
    return t == GgufValueType::U8 || t == GgufValueType::I8 || t == GgufValueType::BOOL || t == GgufValueType::U16 ||
           t == GgufValueType::I16 || t == GgufValueType::U32 || t == GgufValueType::I32 || t == GgufValueType::U64 ||
           t == GgufValueType::I64;
}

GgufValue read_value(Cursor & c, uint32_t type_id, const std::string & key, const std::string & path) {
    if (type_id > static_cast<uint32_t>(GgufValueType::F64)) {
        throw InputError(fmt::format("{}: key {}: unknown value type {}", path, key, type_id));
    }
    GgufValue v;
    v.type = static_cast<GgufValueType>(type_id);
    if (is_int_type(v.type)) {
        v.value = read_int(c, v.type, key.c_str());
    } else if (v.type == GgufValueType::F32) {
        v.value = (double) c.get<float>(key.c_str());
    } else if (v.type == GgufValueType::F64) {
        v.value = c.get<double>(key.c_str());
    } else if (v.type == GgufValueType::STRING) {
        v.value = c.string(key.c_str());
    } else {  // ARRAY
        const uint32_t et = c.get<uint32_t>(key.c_str());
        const uint64_t n  = c.get<uint64_t>(key.c_str());
        if (et > static_cast<uint32_t>(GgufValueType::F64) || et == static_cast<uint32_t>(GgufValueType::ARRAY)) {
            throw InputError(fmt::format("{}: key {}: unsupported array element type {}", path, key, et));
        }
        v.element_type = static_cast<GgufValueType>(et);
        // Every element takes at least one byte: a count past the file's end is caught before
        // anything is allocated.
        c.need(n * std::max<size_t>(scalar_size(v.element_type), 8 * (v.element_type == GgufValueType::STRING)), key.c_str());
        if (v.element_type == GgufValueType::STRING) {
            std::vector<std::string> s;
            s.reserve(n);
            for (uint64_t i = 0; i < n; i++) s.push_back(c.string(key.c_str()));
            v.value = std::move(s);
        } else if (is_int_type(v.element_type)) {
            std::vector<int64_t> s(n);
            for (uint64_t i = 0; i < n; i++) s[i] = read_int(c, v.element_type, key.c_str());
            v.value = std::move(s);
        } else {
            std::vector<double> s(n);
            for (uint64_t i = 0; i < n; i++) {
                s[i] = v.element_type == GgufValueType::F32 ? (double) c.get<float>(key.c_str()) : c.get<double>(key.c_str());
            }
            v.value = std::move(s);
        }
    }
    return v;
}

}  // namespace

GgufFile::GgufFile(const std::string & path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < 24) {
        ::close(fd);
        throw InputError(fmt::format("{}: not a GGUF file (too short)", path));
    }
    map_size_ = (size_t) st.st_size;
    void * m  = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) throw RuntimeFailure(fmt::format("cannot map {}: {}", path, std::strerror(errno)));
    map_ = static_cast<const uint8_t *>(m);
    try {
        Cursor c(map_, map_size_, path_);
        if (c.get<uint32_t>("magic") != kMagic) throw InputError(fmt::format("{}: not a GGUF file (bad magic)", path));
        version_ = c.get<uint32_t>("version");
        if (version_ != 2 && version_ != 3) {
            throw InputError(fmt::format("{}: GGUF version {} is not supported (2 or 3)", path, version_));
        }
        const uint64_t n_tensors = c.get<uint64_t>("tensor count");
        const uint64_t n_kv      = c.get<uint64_t>("key/value count");
        c.need(n_kv, "key/value count");
        for (uint64_t i = 0; i < n_kv; i++) {
            std::string    key  = c.string("key");
            const uint32_t type = c.get<uint32_t>(key.c_str());
            GgufValue      v    = read_value(c, type, key, path_);
            if (!kv_.emplace(key, std::move(v)).second) throw InputError(fmt::format("{}: key {} appears twice", path, key));
            key_order_.push_back(key);
        }
        uint64_t alignment = 32;
        if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
            const int64_t a = it->second.as_int();
            if (a <= 0 || (a & (a - 1)) != 0) throw InputError(fmt::format("{}: general.alignment {} is not a power of two", path, a));
            alignment = (uint64_t) a;
        }
        c.need(n_tensors, "tensor count");
        for (uint64_t i = 0; i < n_tensors; i++) {
            GgufTensorInfo t;
            t.name              = c.string("tensor name");
            const uint32_t dims = c.get<uint32_t>(t.name.c_str());
            if (dims == 0 || dims > 4) throw InputError(fmt::format("{}: tensor {}: {} dimensions", path, t.name, dims));
            t.shape.resize(dims);
            for (uint32_t d = 0; d < dims; d++) {
                const uint64_t n = c.get<uint64_t>(t.name.c_str());
                if (n == 0 || n > (1ull << 40)) throw InputError(fmt::format("{}: tensor {}: dimension {} is {}", path, t.name, d, n));
                t.shape[dims - 1 - d] = (int64_t) n;
            }
            const uint32_t type_id = c.get<uint32_t>(t.name.c_str());
            const auto     type    = ggml_type_from_id(type_id);
            if (!type) throw InputError(fmt::format("{}: tensor {}: ggml type {} is not supported", path, t.name, type_id));
            t.type   = *type;
            t.offset = c.get<uint64_t>(t.name.c_str());
            if (t.row_length() % ggml_block_size(t.type) != 0) {
                throw InputError(fmt::format("{}: tensor {}: rows of {} values do not fill {} blocks", path, t.name,
                                             t.row_length(), ggml_type_name(t.type)));
            }
            if (t.numel() > (int64_t) 1 << 40) throw InputError(fmt::format("{}: tensor {}: too large", path, t.name));
            t.bytes = ggml_row_bytes(t.type, t.row_length()) * (uint64_t) (t.numel() / t.row_length());
            if (t.offset % alignment != 0) throw InputError(fmt::format("{}: tensor {}: offset {} not aligned", path, t.name, t.offset));
            tensors_.push_back(std::move(t));
        }
        data_start_ = align_up(c.offset(map_), alignment);
        for (const GgufTensorInfo & t : tensors_) {
            if (data_start_ > map_size_ || t.offset > map_size_ - data_start_ || t.bytes > map_size_ - data_start_ - t.offset) {
                throw InputError(fmt::format("{}: tensor {}: data lie outside the file (truncated?)", path, t.name));
            }
        }
    } catch (...) {
        ::munmap(const_cast<uint8_t *>(map_), map_size_);
        throw;
    }
}

GgufFile::~GgufFile() {
    if (map_) ::munmap(const_cast<uint8_t *>(map_), map_size_);
}

const GgufValue & GgufFile::at(const std::string & key) const {
    auto it = kv_.find(key);
    if (it == kv_.end()) throw InputError(fmt::format("{}: no key {}", path_, key));
    return it->second;
}

const GgufTensorInfo * GgufFile::find(const std::string & name) const {
    for (const GgufTensorInfo & t : tensors_) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

std::span<const uint8_t> GgufFile::bytes(const GgufTensorInfo & info) const {
    return {map_ + data_start_ + info.offset, (size_t) info.bytes};
}

std::vector<float> GgufFile::read_f32(const GgufTensorInfo & info) const {
    std::vector<float> out((size_t) info.numel());
    const int64_t      n = info.row_length();
    dequantize_rows(info.type, bytes(info).data(), info.numel() / n, n, out.data());
    check_finite_input(count_nonfinite(out.data(), out.size()), path_, info.name);
    return out;
}

}  // namespace paft
