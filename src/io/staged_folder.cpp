#include "io/staged_folder.h"

#include "core/error.h"
#include "io/fs.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

namespace paft {

namespace fs = std::filesystem;

StagedFolder::StagedFolder(std::string target) :
    target_(std::move(target)), partial_(hidden_sibling(target_, ".paft-partial")) {
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
