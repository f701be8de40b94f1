// An output folder locked while a command writes it: two `paft sft --out X` at once would
// interleave metrics.jsonl and race on their renames. DIR/.paft.lock holds the writer's PID, host
// and command, under an advisory lock (flock) that the system drops when the process ends however
// it ends, so a lock file left by a killed run is simply taken over.
#pragma once

#include <string>

namespace paft {

class OutputLock {
public:
    // Makes `dir` if missing and locks it for this process. InputError naming the holder (from its
    // lock file) when another live process holds it.
    explicit OutputLock(const std::string & dir);
    ~OutputLock();  // removes the lock file, then unlocks
    OutputLock(const OutputLock &)             = delete;
    OutputLock & operator=(const OutputLock &) = delete;

    // The command line written into lock files (main sets it; empty: "paft").
    static void set_command(std::string command);

private:
    std::string path_;
    int         fd_ = -1;
};

}  // namespace paft
