// What the fuzz harnesses share. Each harness feeds libFuzzer's bytes to one parser the way the
// program does (through a file when the program reads a file) and lets only InputError through:
// that is the parser's contract for bad input (exit 2 with a message). Anything else, whether a
// crash, a sanitizer report, a leak, a hang (libFuzzer's -timeout) or another exception escaping
// (std::terminate), is a finding.
#pragma once

#include "core/error.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace paft::fuzz {

// A private folder for this process's input files, removed when it exits.
struct ScratchFolder {
    std::string path;
    ScratchFolder() {
        const char * tmp = std::getenv("TMPDIR");
        path             = std::string(tmp && *tmp ? tmp : "/tmp") + "/paft-fuzz-XXXXXX";
        if (!mkdtemp(path.data())) {
            std::abort();
        }
    }
    ~ScratchFolder() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

inline const std::string & scratch_dir() {
    static const ScratchFolder folder;
    return folder.path;
}

// Writes `size` bytes to scratch_dir()/name; returns the path.
inline std::string write_input(const std::string & name, const uint8_t * data, size_t size) {
    const std::string path = scratch_dir() + "/" + name;
    std::ofstream     out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(data), (std::streamsize) size);
    out.close();
    if (!out) {
        std::abort();
    }
    return path;
}

inline std::string write_text(const std::string & name, const std::string & text) {
    return write_input(name, reinterpret_cast<const uint8_t *>(text.data()), text.size());
}

// Runs `parse`; bad input must come out as InputError, nothing else.
template <typename F> void expect_input_error_only(F && parse) {
    try {
        parse();
    } catch (const paft::InputError &) {
    }
}

}  // namespace paft::fuzz
