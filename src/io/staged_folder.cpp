#include "io/staged_folder.h"

#include "core/error.h"
#include "io/fs.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

namespace paft {

namespace fs = std::filesystem;

namespace {

std::string partial_of(const std::string & target) {
    const fs::path p      = fs::path(target).lexically_normal();
    const fs::path name   = p.filename().empty() ? p.parent_path().filename() : p.filename();
    const fs::path parent = p.filename().empty() ? p.parent_path().parent_path() : p.parent_path();
    // Built with append(): "." + std::string trips a GCC 12 -Wrestrict false positive.
    std::string hidden = ".";
    hidden.append(name.string()).append(".paft-partial");
    return (parent / hidden).string();
}

}  // namespace

StagedFolder::StagedFolder(std::string target) : target_(std::move(target)), partial_(partial_of(target_)) {
    std::error_code ec;
    if (fs::exists(partial_, ec)) {
        std::fprintf(stderr, "paft: removing %s left by an interrupted run\n", partial_.c_str());
        fs::remove_all(partial_, ec);
    }
    make_dirs(partial_);
}

StagedFolder::~StagedFolder() {
    if (!committed_) {
        std::error_code ec;
        fs::remove_all(partial_, ec);
    }
}

void StagedFolder::commit(bool replace) {
    std::error_code ec;
    if (replace && fs::exists(target_, ec)) {
        fs::remove_all(target_, ec);
        if (ec) throw RuntimeFailure(fmt::format("cannot remove {} to replace it: {}", target_, ec.message()));
    }
    fs::rename(partial_, target_, ec);
    if (ec) throw RuntimeFailure(fmt::format("cannot rename {} to {}: {}", partial_, target_, ec.message()));
    committed_ = true;
}

}  // namespace paft
