// Small helpers the benchmark programs share.
#pragma once

#include <chrono>
#include <fstream>
#include <string>

// Seconds on a monotonic clock.
inline double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The 1-minute load average: the machine is shared, and figures only mean something next to it.
inline std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string   one;
    in >> one;
    return one.empty() ? "?" : one;
}
