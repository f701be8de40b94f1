// The stages of a long run (paft run), each done once: a stage's record in STAGES_DIR/NAME.json
// holds the fingerprint of what it was run from (its settings, input files and the stages it
// builds on), its status, wall time and peak memory. A repeated or resumed run reuses a stage
// whose record says "done" with the same fingerprint; a stage cut short ("running") continues with
// its outputs as they are (trainers resume from their checkpoints); a stage whose settings changed
// has its outputs removed and runs again.
//
// Under mpirun every rank runs the same stages in the same order: rank 0 decides whether a stage
// is reused, removes old outputs and writes the records; a stage's work runs on every rank (a
// training or an evaluation, shared among them) or on rank 0 alone (file work: a merge, an
// export), and every rank leaves the stage with rank 0's record.
#pragma once

#include "core/communicator.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace paft {

struct StageRecord {
    std::string            name;         // "train/sft", "merge/paft-ties", "eval/base", ...
    std::string            fingerprint;  // 16 hex digits
    std::string            status;       // "running" or "done"
    double                 seconds          = 0;  // wall time of the run that completed it
    uint64_t               peak_memory      = 0;  // bytes of resident memory at most during it
    bool                   peak_of_process  = false;  // the system could not reset the peak: whole process
    bool                   reused           = false;  // done by an earlier run (not written to disk)
    nlohmann::ordered_json info = nlohmann::ordered_json::object();  // the stage's own figures
};

// A 64-bit FNV-1a hash as 16 hex digits.
std::string fingerprint_text(const std::string & text);
// A file's fingerprint: its size and the hash of its bytes (read in chunks). InputError if missing.
std::string file_fingerprint(const std::string & path);
// A model folder's: config.json's bytes and the names and sizes of its other files (weights are
// too large to hash on every run).
std::string folder_fingerprint(const std::string & dir);

// Who runs a stage's work under MPI.
enum class StageRanks { every, first };

class StageRunner {
public:
    // `stages_dir` holds the records; `total` stages are expected (for "[k/total]" lines); `ranks`
    // run the stages together.
    StageRunner(std::string stages_dir, int total, Communicator & ranks = world());

    // Runs `work` (which fills the record's info) unless the stage is done with this fingerprint.
    // `outputs` (files or folders) are removed first when an earlier record has another
    // fingerprint. Returns the record (reused or new), the same on every rank.
    StageRecord run(const std::string & name, const nlohmann::ordered_json & inputs,
                    const std::vector<std::string> & outputs, const std::function<void(StageRecord &)> & work,
                    StageRanks who = StageRanks::every);

    const std::vector<StageRecord> & records() const { return records_; }

private:
    std::string              dir_;
    int                      total_, index_ = 0;
    Communicator &           ranks_;
    std::vector<StageRecord> records_;
    std::string              record_path(const std::string & name) const;
    void                     write(const StageRecord & record) const;
};

nlohmann::ordered_json stage_record_json(const StageRecord & record);

}  // namespace paft
