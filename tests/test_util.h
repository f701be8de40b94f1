// Small helpers shared by the tests.
#pragma once

#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/lora.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

// max(a, b) that lets a NaN through (std::max drops it when it is the second argument), so an
// error measure built from it cannot hide NaN results.
// n values drawn uniformly from [lo, hi).
inline std::vector<float> uniform_floats(std::mt19937 & rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float>                    v(n);
    for (float & x : v) x = dist(rng);
    return v;
}

inline double nan_max(double a, double b) {
    if (a != a || b != b) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    return a > b ? a : b;
}

// The tests' error measure: max |got - want| / max |want| (element-wise relative error means
// nothing near zero). NaN anywhere, or different sizes, give NaN, which fails any bound.
inline double rel_error(const std::vector<double> & got, const std::vector<double> & want) {
    if (got.size() != want.size()) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < want.size(); i++) {
        max_diff = nan_max(max_diff, std::fabs(got[i] - want[i]));
        max_ref  = nan_max(max_ref, std::fabs(want[i]));
    }
    return max_ref > 0 ? max_diff / max_ref : max_diff;
}

// The same over want.size() floats from `got`, skipping entries whose keep[i] is 0.
inline double rel_error(const float * got, const std::vector<float> & want, const std::vector<uint8_t> * keep = nullptr) {
    std::vector<double> g, w;
    for (size_t i = 0; i < want.size(); i++) {
        if (!keep || (*keep)[i]) {
            g.push_back(got[i]);
            w.push_back(want[i]);
        }
    }
    return rel_error(g, w);
}

// Folders made by fresh_test_folder, removed when the test program exits.
inline std::vector<std::filesystem::path> & test_folders_to_remove() {
    static std::vector<std::filesystem::path> folders;
    static const bool registered = [] {
        std::atexit([] {
            for (const auto & f : test_folders_to_remove()) {
                std::error_code ec;
                std::filesystem::remove_all(f, ec);
            }
        });
        return true;
    }();
    (void) registered;
    return folders;
}

// A fresh, empty folder for the running test: TMP/PREFIX-PID-TEST (ctest runs tests in parallel),
// removed when the test program exits.
inline std::filesystem::path fresh_test_folder(const std::string & prefix) {
    const auto * test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = prefix + "-" + std::to_string(::getpid()) + "-" + test->test_suite_name() + "." + test->name();
    for (char & c : name) {
        c = c == '/' ? '_' : c;  // parameterised tests are named Suite/Test/param
    }
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    test_folders_to_remove().push_back(dir);
    return dir;
}

// The JSON values of a JSON-lines text (blank lines skipped).
inline std::vector<nlohmann::json> json_lines(const std::string & text) {
    std::vector<nlohmann::json> out;
    std::istringstream          in(text);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
            out.push_back(nlohmann::json::parse(line));
        }
    }
    return out;
}

// Runs `fn`, expecting a paft::InputError whose message contains every one of `parts`.
inline void expect_input_error(const std::function<void()> & fn, std::initializer_list<std::string> parts) {
    try {
        fn();
        ADD_FAILURE() << "no InputError thrown";
    } catch (const paft::InputError & e) {
        const std::string message = e.what();
        for (const std::string & part : parts) {
            EXPECT_NE(message.find(part), std::string::npos) << message;
        }
    }
}

// A small Llama-shaped model for merge, sparsity and extraction tests: hidden 32, 4 heads of 8
// (2 KV heads), MLP 48, vocabulary 40, `layers` layers.
inline paft::ModelConfig small_test_config(int layers) {
    paft::ModelConfig c;
    c.hidden_size       = 32;
    c.intermediate_size = 48;
    c.num_layers        = layers;
    c.num_heads         = 4;
    c.num_kv_heads      = 2;
    c.head_dim          = 8;
    c.vocab_size        = 40;
    return c;
}

// A LoRA configuration: r, lora_alpha, rsLoRA, and the modules ("q_proj,v_proj" or "all-linear").
inline paft::LoraConfig test_lora_config(const std::string & targets, int r, float alpha, bool rslora = false) {
    paft::LoraConfig lc;
    lc.r       = r;
    lc.alpha   = alpha;
    lc.rslora  = rslora;
    lc.targets = paft::parse_lora_targets(targets);
    return lc;
}

// A float64 tensor an oracle wrote (test failure and empty when missing or not F64).
inline std::vector<double> read_f64(const paft::SafetensorsFile & file, const std::string & name) {
    const paft::TensorInfo * info = file.find(name);
    if (!info || info->dtype != paft::DType::F64) {
        ADD_FAILURE() << file.path() << ": no F64 tensor " << name;
        return {};
    }
    std::span<const uint8_t> bytes = file.bytes(*info);
    std::vector<double>      out(bytes.size() / sizeof(double));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}
