#include "model/random_model.h"

#include "core/error.h"
#include "io/fs.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <fmt/format.h>

namespace paft {

namespace fs = std::filesystem;

namespace {

// Hugging Face's initialisation of these models, by tensor name (Model::random's rule).
enum class InitRule { One, Zero, Normal };

InitRule init_rule(const std::string & name) {
    if (name.ends_with("layernorm.weight") || name == "model.norm.weight") {
        return InitRule::One;  // RMSNorm weights
    }
    return name.ends_with(".bias") ? InitRule::Zero : InitRule::Normal;
}

constexpr float kInitStd = 0.02f;  // initializer_range

}  // namespace

void random_init_values(const ParamEntry & entry, Random & rng, float * out) {
    // Norms and biases draw nothing: the Random's state (including Box-Muller's spare value)
    // carries over to the next tensor unchanged.
    const size_t n = entry.numel();
    switch (init_rule(entry.name)) {
        case InitRule::One:
            std::fill(out, out + n, 1.0f);
            return;
        case InitRule::Zero:
            std::fill(out, out + n, 0.0f);
            return;
        case InitRule::Normal:
            for (size_t i = 0; i < n; i++) {
                out[i] = kInitStd * rng.normal();
            }
            return;
    }
}

namespace {

// Values per chunk of the parallel draw (~2 ms of normals): even, so that every chunk starts on a
// whole Box-Muller pair.
constexpr size_t kChunkValues = 1 << 16;

// random_init_values for an InitRule::Normal tensor [n], drawn by all cores and bit-identical.
// Random::normal (src/core/random.cpp) makes its values in pairs from two next_u64() each and
// keeps the second as a spare, so a chunk of 2m values starts exactly 2m next_u64() further on:
// a copy of the generator advanced by next_u64() alone (~5 ns a value, against ~25 ns for a
// normal) gives each chunk's start, sequentially; the chunks are then drawn in parallel. With T
// threads that is ~5 + 25/T ns a value (7.2e9 values for a 7B model: ~50 s on 16 cores, ~3 min on
// one). `spare`: the generator holds a spare (an odd count of values drawn so far), which comes
// first. test-init-model pins all this against the sequential draw.
void draw_normals_parallel(Random & rng, bool spare, size_t n, float * out) {
    size_t first = 0;
    if (spare && n > 0) {
        out[0] = kInitStd * rng.normal();
        first  = 1;
    }
    const size_t chunks = (n - first + kChunkValues - 1) / kChunkValues;
    // One thread: the walk below would only add its ~5 ns a value to the ~25 of the draw itself.
    if (chunks <= 1 || omp_get_max_threads() < 2) {
        for (size_t i = first; i < n; i++) {
            out[i] = kInitStd * rng.normal();
        }
        return;
    }
    std::vector<Random> starts;
    starts.reserve(chunks);
    Random walker = rng;
    for (size_t c = 0; c < chunks; c++) {
        starts.push_back(walker);
        for (size_t k = 0; c + 1 < chunks && k < kChunkValues; k++) {
            walker.next_u64();
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (int64_t) chunks; c++) {
        Random       local = starts[c];
        const size_t begin = first + (size_t) c * kChunkValues, end = std::min(n, begin + kChunkValues);
        for (size_t i = begin; i < end; i++) {
            out[i] = kInitStd * local.normal();
        }
        starts[c] = local;
    }
    rng = starts[chunks - 1];  // after the last value, with its spare when the last chunk is odd
}

}  // namespace

void random_init_values_parallel(const ParamEntry & entry, Random & rng, uint64_t values_drawn, float * out) {
    if (init_rule(entry.name) != InitRule::Normal) {
        random_init_values(entry, rng, out);
        return;
    }
    draw_normals_parallel(rng, values_drawn % 2 == 1, entry.numel(), out);
}

uint64_t random_init_draws(const ParamEntry & entry) {
    return init_rule(entry.name) == InitRule::Normal ? entry.numel() : 0;
}

namespace {

// Where the model goes and where it is written first.
struct Destination {
    fs::path dir;       // `dir` with symlinks resolved: the folder that ends up holding the model
    fs::path partial;   // .<name>.paft-partial next to it, on the same file system (rename)
    fs::path existing;  // the nearest folder above `dir` that exists before the write
};

Destination destination(const std::string & dir) {
    std::error_code ec;
    const fs::file_status link = fs::symlink_status(dir, ec);
    if (fs::exists(link) && !fs::is_directory(fs::status(dir, ec))) {
        throw InputError(fmt::format("{}: exists and is not a folder", dir));
    }
    // Symlinks resolved, so that a linked output folder gets its partial folder beside its target
    // (one file system) and is written through rather than replaced.
    fs::path resolved = fs::weakly_canonical(fs::absolute(dir), ec);
    if (ec) {
        throw RuntimeFailure(fmt::format("{}: cannot resolve the path: {}", dir, ec.message()));
    }
    if (resolved.filename().empty()) {
        resolved = resolved.parent_path();  // "out/" -> "out"
    }
    if (resolved.filename().empty() || resolved == resolved.root_path()) {
        throw InputError(fmt::format("{}: not a folder a model can be written to", dir));
    }
    Destination d;
    d.dir      = resolved;
    d.partial  = hidden_sibling(resolved.string(), ".paft-partial");
    d.existing = resolved.parent_path();
    while (!fs::exists(d.existing, ec) && d.existing.has_relative_path()) {
        d.existing = d.existing.parent_path();
    }
    return d;
}

// Refuses a write that cannot fit, before creating anything: the free space of the file system
// that will hold the model, and the machine's memory for two consecutive tensors in f32.
void check_room(const std::string & dir, const Destination & d, double data_bytes, double buffer_bytes) {
    // Headers (~100 B per tensor) and config.json: far under this margin.
    const double  need = data_bytes + (1 << 20);
    struct statvfs fs_stats {};
    if (::statvfs(d.existing.c_str(), &fs_stats) == 0) {
        const double free_bytes = (double) fs_stats.f_bavail * (double) fs_stats.f_frsize;
        if (need > free_bytes) {
            throw RuntimeFailure(fmt::format("cannot write {}: the model takes {:.2f} GB and {} has {:.2f} GB free",
                                             dir, need / 1e9, d.existing.string(), free_bytes / 1e9));
        }
    }
    const double memory = (double) sysconf(_SC_PHYS_PAGES) * (double) sysconf(_SC_PAGESIZE);
    if (memory > 0 && buffer_bytes > memory) {
        throw RuntimeFailure(fmt::format("cannot write {}: two of its tensors need {:.1f} GB of memory as f32; "
                                         "this machine has {:.1f} GB",
                                         dir, buffer_bytes / 1e9, memory / 1e9));
    }
}

// Makes renames in `folder` durable. Best effort: some file systems cannot fsync a folder.
void sync_folder(const fs::path & folder) {
    const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

// "model-00002-of-00005.safetensors": a shard as write_safetensors_sharded names them.
bool is_shard_file(const std::string & name) {
    const std::string prefix = "model-", middle = "-of-", suffix = ".safetensors";
    if (!name.starts_with(prefix) || !name.ends_with(suffix)) {
        return false;
    }
    const std::string numbers = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    const size_t      at      = numbers.find(middle);
    if (at == std::string::npos || at == 0 || at + middle.size() == numbers.size()) {
        return false;
    }
    const std::string digits = numbers.substr(0, at) + numbers.substr(at + middle.size());
    return std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit((unsigned char) c) != 0; });
}

// Moves the finished model from the partial folder to its place (see write_random_model). `files`
// are the partial folder's files in the order they are moved (config.json last).
void move_into_place(const std::string & shown_dir, const Destination & d, const std::vector<std::string> & files,
                     bool sharded) {
    // One step when `dir` is missing or an empty folder (rename replaces an empty folder).
    if (::rename(d.partial.c_str(), d.dir.c_str()) == 0) {
        sync_folder(d.dir.parent_path());
        return;
    }
    const int       error = errno;
    std::error_code ec;
    if ((error != ENOTEMPTY && error != EEXIST) || !fs::is_directory(d.dir, ec)) {
        throw RuntimeFailure(
            fmt::format("cannot move {} to {}: {}", d.partial.string(), shown_dir, std::strerror(error)));
    }
    // A folder with files: replace the model's files one by one, as Model::save does.
    for (const std::string & name : files) {
        const fs::path from = d.partial / name, to = d.dir / name;
        if (::rename(from.c_str(), to.c_str()) != 0) {
            throw RuntimeFailure(
                fmt::format("cannot move {} to {}: {}", from.string(), to.string(), std::strerror(errno)));
        }
    }
    // Model files of the other layout would make TensorStore::open_dir read stale weights (a
    // single file beside an index) or just waste the disk (shards of another count).
    const std::set<std::string> written(files.begin(), files.end());
    std::vector<fs::path>       stale;
    for (const fs::directory_entry & entry : fs::directory_iterator(d.dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (written.count(name)) {
            continue;
        }
        if ((sharded && name == "model.safetensors") || (!sharded && name == "model.safetensors.index.json") ||
            is_shard_file(name)) {
            stale.push_back(entry.path());
        }
    }
    for (const fs::path & path : stale) {
        fs::remove(path, ec);
        if (ec) {
            throw RuntimeFailure(fmt::format("cannot remove stale {}: {}", path.string(), ec.message()));
        }
    }
    fs::remove(d.partial, ec);  // empty by now
    sync_folder(d.dir);
}

// Undoes a failed write: the partial folder, and the empty parent folders created for it.
void clean_up(const Destination & d) {
    std::error_code ec;
    fs::remove_all(d.partial, ec);
    for (fs::path folder = d.partial.parent_path(); folder != d.existing && folder.has_relative_path();
         folder          = folder.parent_path()) {
        if (!fs::remove(folder, ec)) {  // only removes an empty folder
            break;
        }
    }
}

// Generates the tensors in layout order (one Random, as Model::random) and writes each as soon as
// it exists. Drawing tensor i+1 overlaps narrowing and writing tensor i on another thread; each
// tensor's f32 buffer is freed once written, so two consecutive tensors are in memory at most.
void write_tensors(ShardedWriter & writer, const std::vector<ParamEntry> & entries, uint64_t seed,
                   const WriteProgress & progress) {
    Random            rng(seed);
    uint64_t          drawn = 0;  // normals drawn so far
    std::future<void> pending;    // the write of tensor pending_index
    size_t            pending_index = 0;
    uint64_t          written       = 0;
    auto              finish_pending = [&]() {
        pending.get();  // rethrows the write's error
        written += entries[pending_index].numel() * dtype_size(writer.entries()[pending_index].dtype);
        if (progress) {
            progress(written, writer.total_bytes());
        }
    };
    for (size_t i = 0; i < entries.size(); i++) {
        std::unique_ptr<float[]> values(new float[entries[i].numel()]);  // uninitialised: every value is set
        random_init_values_parallel(entries[i], rng, drawn, values.get());
        drawn += random_init_draws(entries[i]);
        if (pending.valid()) {
            finish_pending();
        }
        pending_index = i;
        pending = std::async(std::launch::async, [&writer, i, buffer = std::move(values)]() mutable {
            writer.write_f32(i, buffer.get());
            buffer.reset();
        });
    }
    if (pending.valid()) {
        finish_pending();
    }
}

}  // namespace

void write_random_model(const ModelConfig & config, uint64_t seed, DType dtype, const std::string & dir,
                        uint64_t max_shard_bytes, const WriteProgress & progress) {
    if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16) {
        throw std::logic_error(fmt::format("write_random_model: dtype {} is not F32, BF16 or F16", dtype_name(dtype)));
    }
    const Destination d = destination(dir);
    const ParamLayout layout(config);

    std::vector<ShardedWriter::Entry> entries;
    double                            data_bytes = 0, largest_pair = 0;  // values of two consecutive tensors
    for (size_t i = 0; i < layout.entries().size(); i++) {
        const ParamEntry & e = layout.entries()[i];
        entries.push_back({e.name, e.shape, dtype});
        data_bytes += (double) e.numel() * (double) dtype_size(dtype);
        const double next = i + 1 < layout.entries().size() ? (double) layout.entries()[i + 1].numel() : 0.0;
        largest_pair      = std::max(largest_pair, (double) e.numel() + next);
    }
    check_room(dir, d, data_bytes, largest_pair * sizeof(float));

    std::error_code ec;
    if (fs::exists(d.partial, ec)) {
        fmt::print(stderr, "paft: removing {} left by an interrupted write\n", d.partial.string());
        fs::remove_all(d.partial, ec);
        if (ec) {
            throw RuntimeFailure(fmt::format("cannot remove {}: {}", d.partial.string(), ec.message()));
        }
    }
    try {
        make_dirs(d.partial.string());
        std::vector<std::string> files;
        bool                     sharded = false;
        {
            ShardedWriter writer(d.partial.string(), "model", std::move(entries), max_shard_bytes, {{"format", "pt"}});
            write_tensors(writer, layout.entries(), seed, progress);
            writer.finish();
            const size_t count = writer.shard_count();
            sharded            = count > 1;
            for (size_t s = 0; s < count; s++) {
                files.push_back(sharded ? fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, count)
                                        : std::string("model.safetensors"));
            }
            if (sharded) {
                files.push_back("model.safetensors.index.json");
            }
        }
        ModelConfig written = config;
        written.torch_dtype = dtype == DType::BF16 ? "bfloat16" : dtype == DType::F16 ? "float16" : "float32";
        write_file_atomic((d.partial / "config.json").string(), model_config_to_json(written));
        files.push_back("config.json");
        move_into_place(dir, d, files, sharded);
    } catch (...) {
        clean_up(d);
        throw;
    }
}

}  // namespace paft
