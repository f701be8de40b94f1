// File helpers: whole-file reads and atomic writes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace paft {

// Reads a whole file; InputError naming it when it cannot be read.
std::string read_file(const std::string & path);

// Writes `data` to `path` atomically: a temporary file in the same folder, flushed and
// fsync'ed, then renamed over `path`. RuntimeFailure naming the path on error.
void write_file_atomic(const std::string & path, std::string_view data);

// Appends `size` bytes to the file being written.
using WriteChunk = std::function<void(const void * data, size_t size)>;

// Like write_file_atomic, but the content is streamed: `fill` calls its argument once per
// chunk, so a large file never has to be built in memory first.
void write_file_atomic_stream(const std::string & path, const std::function<void(const WriteChunk &)> & fill);

// Copies each of `names` that exists in folder `from` into folder `to` (atomically, file by file).
void copy_files_if_present(const std::string & from, const std::string & to,
                           std::initializer_list<const char *> names);

// The files next to a Hugging Face model's weights that describe its tokenizer.
inline constexpr std::initializer_list<const char *> kTokenizerFiles = {
    "tokenizer.json",  "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json",      "merges.txt",            "added_tokens.json",       "chat_template.jinja"};

// DIR/.NAME<suffix> for `path` DIR/NAME (a trailing slash ignored): a hidden file or folder
// beside an output, on its file system (a partial folder renamed into place, a lock file).
std::string hidden_sibling(const std::string & path, const std::string & suffix);

// Whether `path` exists / is a regular file / is a folder (symbolic links followed). Never throws:
// a path the system cannot look at (too long, a loop, no permission) is none of them, and the
// read or write that follows names it in its error.
bool path_exists(const std::filesystem::path & path);
bool is_file(const std::filesystem::path & path);
bool is_folder(const std::filesystem::path & path);

// Creates a folder and its parents if missing.
void make_dirs(const std::string & path);

// Appends `line` and a newline to the file at `path` (created if missing) and flushes it, so a
// killed process loses at most the line being written (logs such as metrics.jsonl).
// RuntimeFailure naming the file when it cannot be written.
void append_line(const std::string & path, const std::string & line);

// An input a command reads: its path (empty: none given) and the flag or key that named it.
struct NamedPath {
    std::string path;
    std::string name;
};

// InputError when the output `output` (named `name`) is, contains or lies inside one of `inputs`
// (compared after resolving ".", ".." and symbolic links): writing it would destroy what the
// command reads, whatever --overwrite says.
void check_output_apart(const std::string & output, const std::string & name, const std::vector<NamedPath> & inputs);

}  // namespace paft
