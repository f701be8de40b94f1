// Progress of long work on stderr: a bar with rate and ETA on a terminal, plain lines otherwise
// (at most one every few seconds, so logs stay short).
#pragma once

#include <chrono>
#include <string>

namespace paft {

class Progress {
public:
    // `plain`: plain lines even on a terminal (several bars at once would overwrite each other).
    Progress(std::string label, long total, std::string unit, bool plain = false);
    void update(long done);  // absolute count
    // A short text shown after the rate (e.g. "loss 2.31, 1830 tok/s").
    void set_status(std::string status) { status_ = std::move(status); }
    void finish();

private:
    std::string                           label_, unit_, status_;
    long                                  total_, done_ = 0;
    bool                                  tty_;
    bool                                  silent_;  // a rank other than 0 of an MPI job: rank 0 shows the job's progress
    std::chrono::steady_clock::time_point start_, last_print_;
    void                                  print(bool final);
};

}  // namespace paft
