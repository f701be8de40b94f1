// An output folder locked while a command writes it: two `paft sft --out X` at once would
// interleave metrics.jsonl and race on their renames. DIR/.paft.lock holds the writer's PID, host
// and command, under an advisory lock (flock) that the system drops when the process ends however
// it ends, so a lock file left by a killed run is simply taken over.
#pragma once

#include <string>

namespace paft {

// Where the lock file goes: inside an output folder (DIR/.paft.lock), or beside an output that a
// command replaces whole (a file, or a folder written through StagedFolder): DIR/.NAME.paft-lock.
enum class LockPlace { inside, beside };

class OutputLock {
public:
    // Locks `output` for this process (making the folder that holds the lock file if missing).
    // InputError naming the holder (from its lock file) when another live process holds it.
    explicit OutputLock(const std::string & output, LockPlace place = LockPlace::inside);
    ~OutputLock();  // removes the lock file, then unlocks
    OutputLock(const OutputLock &)             = delete;
    OutputLock & operator=(const OutputLock &) = delete;

    // The command line written into lock files (main sets it; empty: "paft").
    static void set_command(std::string command);

    // InputError unless `dir` is missing or holds nothing but a lock file: for commands whose
    // output replaces a folder's files, run without the flag that allows it (`how` says which:
    // "pass --overwrite to replace them").
    static void refuse_existing(const std::string & dir, const std::string & name,
                                const std::string & how = "pass --overwrite to replace them");

private:
    std::string path_;
    std::string made_folder_;  // made for the lock file: removed with it when still empty
    int         fd_ = -1;
};

}  // namespace paft
