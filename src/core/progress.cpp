#include "core/progress.h"

#include "core/communicator.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace paft {

Progress::Progress(std::string label, long total, std::string unit, bool plain)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(!plain && isatty(STDERR_FILENO) != 0),
      silent_(world().rank() != 0), start_(std::chrono::steady_clock::now()), last_print_(start_) {}

void Progress::update(long done) {
    done_    = done;
    auto now = std::chrono::steady_clock::now();
    auto gap = std::chrono::duration<double>(now - last_print_).count();
    if (gap >= (tty_ ? 0.2 : 5.0)) {
        last_print_ = now;
        print(false);
    }
}

void Progress::finish() {
    print(true);
}

void Progress::print(bool final) {
    if (silent_) {
        return;
    }
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double rate    = elapsed > 0 ? done_ / elapsed : 0.0;
    double eta     = rate > 0 ? (total_ - done_) / rate : 0.0;
    double frac    = total_ > 0 ? (double) done_ / total_ : 1.0;
    if (tty_) {
        const int   width = 30;
        int         fill  = (int) (frac * width);
        std::string bar   = std::string(fill, '#') + std::string(width - fill, '.');
        fmt::print(stderr, "\r{} [{}] {}/{} {} {:.1f} {}/s{} ETA {:.0f}s\x1b[K", label_, bar, done_, total_, unit_, rate,
                   unit_, status_.empty() ? "" : ", " + status_, eta);
        if (final) {
            fmt::print(stderr, "\n");
        }
    } else {
        fmt::print(stderr, "{}: {}/{} {} ({:.0f}%), {:.1f} {}/s{}, {}\n", label_, done_, total_, unit_, frac * 100,
                   rate, unit_, status_.empty() ? "" : ", " + status_,
                   final ? fmt::format("done in {:.1f}s", elapsed) : fmt::format("ETA {:.0f}s", eta));
    }
    std::fflush(stderr);
}

}  // namespace paft
