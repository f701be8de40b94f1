#include "run/stages.h"

#include "core/error.h"
#include "core/memory.h"
#include "io/fs.h"

#include <fmt/format.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

namespace paft {
namespace fs = std::filesystem;

namespace {

// Returns the memory the allocator holds free (glibc keeps freed heap and per-thread arenas) to
// the system.
void release_free_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime  = 1099511628211ull;

uint64_t fnv1a(uint64_t h, const char * data, size_t size) {
    for (size_t i = 0; i < size; i++) {
        h = (h ^ (unsigned char) data[i]) * kFnvPrime;
    }
    return h;
}

std::string hex(uint64_t h) {
    return fmt::format("{:016x}", h);
}

}  // namespace

std::string fingerprint_text(const std::string & text) {
    return hex(fnv1a(kFnvOffset, text.data(), text.size()));
}

std::string file_fingerprint(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw InputError(fmt::format("{}: cannot read the file", path));
    }
    uint64_t          h = kFnvOffset, size = 0;
    std::vector<char> buffer(1 << 20);
    while (in) {
        in.read(buffer.data(), (std::streamsize) buffer.size());
        const size_t got = (size_t) in.gcount();
        h                = fnv1a(h, buffer.data(), got);
        size += got;
    }
    return fmt::format("{}:{}", size, hex(h));
}

std::string folder_fingerprint(const std::string & dir) {
    if (!is_folder(dir)) {
        throw InputError(fmt::format("{}: not a folder", dir));
    }
    std::vector<std::string> entries;
    for (const auto & e : fs::directory_iterator(dir)) {
        if (e.is_regular_file()) {
            entries.push_back(fmt::format("{}={}", e.path().filename().string(), e.file_size()));
        }
    }
    std::sort(entries.begin(), entries.end());
    std::string text = path_exists(dir + "/config.json") ? read_file(dir + "/config.json") : "";
    for (const std::string & e : entries) {
        text += "\n" + e;
    }
    return fingerprint_text(text);
}

nlohmann::ordered_json stage_record_json(const StageRecord & r) {
    return {{"stage", r.name},
            {"fingerprint", r.fingerprint},
            {"status", r.status},
            {"seconds", r.seconds},
            {"peak_memory_bytes", r.peak_memory},
            {"peak_of_process", r.peak_of_process},
            {"info", r.info}};
}

StageRunner::StageRunner(std::string stages_dir, int total, Communicator & ranks) :
    dir_(std::move(stages_dir)), total_(total), ranks_(ranks) {}

std::string StageRunner::record_path(const std::string & name) const {
    std::string file = name;
    std::replace(file.begin(), file.end(), '/', '.');
    return dir_ + "/" + file + ".json";
}

void StageRunner::write(const StageRecord & r) const {
    if (ranks_.rank() == 0) {
        make_dirs(dir_);
        write_file_atomic(record_path(r.name), stage_record_json(r).dump(2) + "\n");
    }
}

StageRecord StageRunner::run(const std::string & name, const nlohmann::ordered_json & inputs,
                             const std::vector<std::string> & outputs,
                             const std::function<void(StageRecord &)> & work, StageRanks who) {
    index_++;
    const bool  first = ranks_.rank() == 0;
    StageRecord r;
    r.name        = name;
    r.fingerprint = fingerprint_text(inputs.dump());
    // Rank 0 reads the earlier record; every rank learns the one it found done, if any.
    std::string done_before;
    const std::string path = record_path(name);
    if (first && path_exists(path)) {
        nlohmann::ordered_json old = nlohmann::ordered_json::parse(read_file(path), nullptr, false);
        const bool same = !old.is_discarded() && old.value("fingerprint", "") == r.fingerprint;
        if (same && old.value("status", "") == "done") {
            done_before = old.dump();
        } else if (!same) {
            for (const std::string & out : outputs) {
                fs::remove_all(out);  // made from other settings
            }
        }
    }
    ranks_.broadcast(done_before, 0);
    if (!done_before.empty()) {
        const nlohmann::ordered_json old = nlohmann::ordered_json::parse(done_before);
        r.status          = "done";
        r.seconds         = old.value("seconds", 0.0);
        r.peak_memory     = old.value("peak_memory_bytes", (uint64_t) 0);
        r.peak_of_process = old.value("peak_of_process", false);
        r.info            = old.value("info", nlohmann::ordered_json::object());
        r.reused          = true;
        if (first) {
            fmt::print(stderr, "paft run [{}/{}] {}: done before, reused\n", index_, total_, name);
        }
        records_.push_back(r);
        return r;
    }
    if (first) {
        fmt::print(stderr, "paft run [{}/{}] {}\n", index_, total_, name);
    }
    r.status = "running";
    write(r);
    // Memory earlier stages freed but the allocator kept goes back to the system first, so that the
    // process carries little from stage to stage and the peak is this stage's own (as plan.h counts it).
    release_free_memory();
    r.peak_of_process = !reset_peak_resident();
    const auto t0     = std::chrono::steady_clock::now();
    if (who == StageRanks::every || first) {
        try {
            work(r);
        } catch (...) {
            if (first) {  // a "running" record of a stage that failed describes nothing to keep
                std::error_code ec;
                fs::remove(record_path(name), ec);
            }
            throw;
        }
    }
    r.seconds     = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.peak_memory = peak_resident_bytes();
    r.status      = "done";
    if (ranks_.size() > 1) {  // rank 0's figures (the others wait here for a stage of its alone)
        std::string info = r.info.dump();
        ranks_.broadcast(info, 0);
        r.info = nlohmann::ordered_json::parse(info);
        ranks_.broadcast(&r.seconds, sizeof r.seconds, 0);
        ranks_.broadcast(&r.peak_memory, sizeof r.peak_memory, 0);
    }
    write(r);
    records_.push_back(r);
    return r;
}

}  // namespace paft
