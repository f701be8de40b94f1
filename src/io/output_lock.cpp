#include "io/output_lock.h"

#include "core/error.h"
#include "io/fs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

namespace paft {
namespace {

std::string & command_line() {
    static std::string command = "paft";
    return command;
}

std::string holder_of(int fd) {
    char    text[512];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    std::string holder(text, n > 0 ? (size_t) n : 0);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) {
        holder.pop_back();
    }
    return holder.empty() ? "another process" : holder;
}

std::string lock_path(const std::string & output, LockPlace place) {
    return place == LockPlace::inside ? output + "/.paft.lock" : hidden_sibling(output, ".paft-lock");
}

}  // namespace

void OutputLock::set_command(std::string command) { command_line() = std::move(command); }

OutputLock::OutputLock(const std::string & output, LockPlace place) : path_(lock_path(output, place)) {
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    std::error_code   ec;
    if (place == LockPlace::inside && std::filesystem::exists(output, ec) && !std::filesystem::is_directory(output, ec)) {
        throw InputError(fmt::format("{} exists and is not a folder: choose a folder for the output", output));
    }
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
        made_folder_ = dir;
        make_dirs(dir);
    }
    // The file we lock must still be the one at the path once locked: a holder that just finished
    // removes its file, and a lock taken on that removed file would guard nothing.
    for (;;) {
        fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            throw RuntimeFailure(fmt::format("cannot create {}: {}", path_, std::strerror(errno)));
        }
        if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            const std::string holder = holder_of(fd_);
            close(fd_);
            fd_ = -1;
            throw InputError(fmt::format("{} is being written by {} (its lock: {}); wait for it to finish, or "
                                         "choose another output",
                                         output, holder, path_));
        }
        struct stat held{}, at_path{};
        if (fstat(fd_, &held) == 0 && stat(path_.c_str(), &at_path) == 0 && held.st_ino == at_path.st_ino &&
            held.st_dev == at_path.st_dev) {
            break;
        }
        close(fd_);  // removed or replaced under us: lock the file that is there now
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const std::string text = fmt::format("pid {} on {}: {}\n", getpid(), host, command_line());
    if (ftruncate(fd_, 0) != 0 || pwrite(fd_, text.data(), text.size(), 0) != (ssize_t) text.size()) {
        close(fd_);
        throw RuntimeFailure(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
    }
}

OutputLock::~OutputLock() {
    if (fd_ >= 0) {
        unlink(path_.c_str());
        close(fd_);
        if (!made_folder_.empty()) {
            std::error_code ec;
            std::filesystem::remove(made_folder_, ec);  // only when empty: what the command wrote stays
        }
    }
}

void OutputLock::refuse_existing(const std::string & dir, const std::string & name, const std::string & how) {
    std::error_code          ec;
    std::vector<std::string> held;
    if (std::filesystem::is_directory(dir, ec)) {
        for (const auto & e : std::filesystem::directory_iterator(dir, ec)) {
            if (e.path().filename() != ".paft.lock") {
                held.push_back(e.path().filename().string());
            }
        }
    } else if (std::filesystem::exists(dir, ec)) {
        throw InputError(fmt::format("{}: {} exists and is not a folder", name, dir));
    }
    if (!held.empty()) {
        std::sort(held.begin(), held.end());
        throw InputError(fmt::format("{}: {} already holds files ({}{}); {}, or choose another folder", name, dir,
                                     held.front(), held.size() > 1 ? fmt::format(" and {} more", held.size() - 1) : "",
                                     how));
    }
}

}  // namespace paft
