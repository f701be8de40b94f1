// Progress of long work on stderr: a bar with rate and ETA on a terminal, plain lines otherwise
// (at most one every few seconds, so logs stay short).
#pragma once

#include <chrono>
#include <string>

namespace paft {

class Progress {
public:
    Progress(std::string label, long total, std::string unit);
    void update(long done);  // absolute count
    void finish();

private:
    std::string                           label_, unit_;
    long                                  total_, done_ = 0;
    bool                                  tty_;
    std::chrono::steady_clock::time_point start_, last_print_;
    void                                  print(bool final);
};

}  // namespace paft
