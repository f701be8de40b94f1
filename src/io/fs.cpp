#include "io/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace paft {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes a file descriptor on scope exit unless release()d.
class FdCloser {
public:
    explicit FdCloser(int fd) : fd_(fd) {}
    ~FdCloser() {
        if (fd_ >= 0) ::close(fd_);
    }
    FdCloser(const FdCloser &)             = delete;
    FdCloser & operator=(const FdCloser &) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

private:
    int fd_;
};

// write(2) may write less than asked or be interrupted; loop until everything is written.
void write_all(int fd, const void * data, size_t size, const std::string & path) {
    const auto * p = static_cast<const char *>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw RuntimeFailure(fmt::format("cannot write {}: {}", path, errno_text()));
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
}

// Makes the rename itself durable. Best effort: some file systems cannot fsync a folder, and
// the data are already safe at this point.
void sync_parent_dir(const std::string & path) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    const std::string           dir    = parent.empty() ? std::string(".") : parent.string();
    FdCloser fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() >= 0) ::fsync(fd.get());
}

}  // namespace

std::string read_file(const std::string & path) {
    FdCloser fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw InputError(fmt::format("cannot read {}: {}", path, errno_text()));
    std::string data;
    char        buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n == 0) return data;
        if (n < 0) {
            if (errno == EINTR) continue;
            throw InputError(fmt::format("cannot read {}: {}", path, errno_text()));
        }
        data.append(buf, static_cast<size_t>(n));
    }
}

void write_file_atomic_stream(const std::string & path, const std::function<void(const WriteChunk &)> & fill) {
    // Same folder as the target so that rename() stays within one file system; the pid keeps
    // concurrent writers of the same path from sharing a temporary file.
    const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
    FdCloser          fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw RuntimeFailure(fmt::format("cannot write {}: cannot create {}: {}", path, tmp, errno_text()));
    try {
        fill([&](const void * data, size_t size) { write_all(fd.get(), data, size, path); });
        if (::fsync(fd.get()) != 0) throw RuntimeFailure(fmt::format("cannot write {}: fsync: {}", path, errno_text()));
        if (::close(fd.release()) != 0) throw RuntimeFailure(fmt::format("cannot write {}: close: {}", path, errno_text()));
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            throw RuntimeFailure(fmt::format("cannot write {}: rename from {}: {}", path, tmp, errno_text()));
    } catch (...) {
        ::unlink(tmp.c_str());  // fd, if still open, is closed by FdCloser
        throw;
    }
    sync_parent_dir(path);
}

void write_file_atomic(const std::string & path, std::string_view data) {
    write_file_atomic_stream(path, [&](const WriteChunk & write) { write(data.data(), data.size()); });
}

std::string hidden_sibling(const std::string & path, const std::string & suffix) {
    std::filesystem::path p = std::filesystem::path(path).lexically_normal();
    if (p.filename().empty()) {
        p = p.parent_path();  // "out/" -> "out"
    }
    // Built with append(): "." + std::string trips a GCC 12 -Wrestrict false positive.
    std::string name = ".";
    name.append(p.filename().string()).append(suffix);
    return (p.parent_path() / name).string();
}

bool path_exists(const std::filesystem::path & path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

bool is_file(const std::filesystem::path & path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

bool is_folder(const std::filesystem::path & path) {
    std::error_code ec;
    return std::filesystem::is_directory(path, ec);
}

void make_dirs(const std::string & path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw RuntimeFailure(fmt::format("cannot create folder {}: {}", path, ec.message()));
}

void copy_files_if_present(const std::string & from, const std::string & to,
                           std::initializer_list<const char *> names) {
    for (const char * name : names) {
        const std::filesystem::path source = std::filesystem::path(from) / name;
        std::error_code             ec;
        if (std::filesystem::exists(source, ec)) {
            write_file_atomic((std::filesystem::path(to) / name).string(), read_file(source.string()));
        }
    }
}

void append_line(const std::string & path, const std::string & line) {
    std::ofstream out(path, std::ios::app);
    out << line << "\n";
    out.flush();
    if (!out) {
        throw RuntimeFailure(fmt::format("{}: cannot write", path));
    }
}

namespace {

// Whether `inner` is `outer` or lies inside it, component by component.
bool within(const std::filesystem::path & inner, const std::filesystem::path & outer) {
    auto i = inner.begin();
    for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
        if (o->empty()) {
            continue;  // a trailing separator
        }
        if (i == inner.end() || *i != *o) {
            return false;
        }
    }
    return true;
}

}  // namespace

void check_output_apart(const std::string & output, const std::string & name, const std::vector<NamedPath> & inputs) {
    if (output.empty()) {
        return;
    }
    std::error_code             ec;
    const std::filesystem::path out = std::filesystem::weakly_canonical(output, ec);
    if (ec) {
        return;  // unresolvable: the write itself will say what is wrong
    }
    for (const NamedPath & in : inputs) {
        if (in.path.empty()) {
            continue;
        }
        const std::filesystem::path source = std::filesystem::weakly_canonical(in.path, ec);
        if (ec) {
            continue;
        }
        const char * how = out == source ? "is" : within(out, source) ? "lies inside" : within(source, out) ? "contains" : nullptr;
        if (how) {
            throw InputError(fmt::format("{} {} {} {}, which this command reads: choose another output", name,
                                         output, how, in.name + " " + in.path));
        }
    }
}

}  // namespace paft
