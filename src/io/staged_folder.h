// A folder written whole or not at all. Its files go into a hidden sibling, DIR/.NAME.paft-partial
// (on the same file system, so the final rename is atomic), which commit() renames to the
// target. Destroyed uncommitted (an error, a full disk, a non-finite result), it removes the
// partial folder: nothing is left but what was there before. A partial folder left by a killed
// process is removed by the next one.
#pragma once

#include <string>

namespace paft {

class StagedFolder {
public:
    explicit StagedFolder(std::string target);
    ~StagedFolder();
    StagedFolder(const StagedFolder &)             = delete;
    StagedFolder & operator=(const StagedFolder &) = delete;

    const std::string & path() const { return partial_; }  // where to write
    // Renames the partial folder to the target; an existing target is removed first when `replace`
    // (else it must not exist).
    void commit(bool replace);

private:
    std::string target_, partial_;
    bool        committed_ = false;
};

}  // namespace paft
