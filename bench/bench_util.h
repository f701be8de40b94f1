// Small helpers the benchmark programs share.
#pragma once

#include "model/presets.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

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

// The benchmarks' model shapes: "small" is the llama-120m preset (134M parameters), "1b" TinyLlama
// 1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 key/value heads, intermediate 5632, vocab 32000).
inline paft::ModelConfig bench_model_shape(const std::string & size) {
    paft::ModelConfig c = paft::model_preset("llama-120m");
    if (size == "1b") {
        c.hidden_size       = 2048;
        c.intermediate_size = 5632;
        c.num_layers        = 22;
        c.num_heads         = 32;
        c.num_kv_heads      = 4;
        c.head_dim          = 64;
        c.vocab_size        = 32000;
    }
    return c;
}

// Runs a peer program (`cmd`, a shell command) whose last line on standard output is one JSON
// object, and returns that object; null (with the peer's output on stderr) when it fails.
inline nlohmann::json run_peer(const std::string & cmd) {
    FILE *      pipe = popen(cmd.c_str(), "r");
    std::string output;
    char        buf[1 << 16];
    for (size_t n; pipe && (n = fread(buf, 1, sizeof buf, pipe)) > 0;) {
        output.append(buf, n);
    }
    while (!output.empty() && output.back() == '\n') {
        output.pop_back();
    }
    const size_t   start = output.rfind('\n');
    nlohmann::json last  = nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start + 1), nullptr,
                                                 false);
    if (!pipe || pclose(pipe) != 0 || !last.is_object()) {
        fmt::print(stderr, "the peer failed: {}\n{}\n", cmd, output);
        return nullptr;
    }
    return last;
}
