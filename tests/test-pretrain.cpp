// paft pretrain: four full-parameter steps against the float64 PyTorch oracle
// (tools/reference/pretrain_ref.py), the corpus cut into chunks and packed, resuming bit for bit,
// the written model folder, learning, and bad input.
//
// The tests' tokenizer is character-level (no merges): id 3 + i for the i-th character of
// kAlphabet, "<unk>" 0, "<s>" 1, "</s>" 2, no post-processor. So a text's ids are known by hand:
// its characters' ids, then EOS.
#include "core/error.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/pretrain.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

namespace fs = std::filesystem;
using json   = nlohmann::json;
using namespace paft;

namespace {

const std::string kOracle   = std::string(PAFT_SOURCE_DIR) + "/tools/reference/pretrain_ref.py";
const std::string kAlphabet = "abcdefghijklmnopqrstuvwxyz .,";
constexpr int     kEos      = 2;

void write_char_tokenizer(const fs::path & dir) {
    fs::create_directories(dir);
    json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    for (size_t i = 0; i < kAlphabet.size(); i++) {
        vocab[kAlphabet.substr(i, 1)] = 3 + (int) i;
    }
    json added = json::array();
    for (const auto & [content, id] : {std::pair{"<unk>", 0}, std::pair{"<s>", 1}, std::pair{"</s>", 2}}) {
        added.push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", false}, {"special", true}});
    }
    json tok = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
                {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr},
                {"decoder", nullptr},
                {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"fuse_unk", true},
                           {"byte_fallback", false}, {"vocab", vocab}, {"merges", json::array()}}}};
    spit(dir / "tokenizer.json", tok.dump());
    spit(dir / "tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})");
}

std::vector<int32_t> char_ids(const std::string & text) {
    std::vector<int32_t> ids;
    for (char c : text) {
        ids.push_back(3 + (int32_t) kAlphabet.find(c));
    }
    ids.push_back(kEos);
    return ids;
}

// Documents of 1 to 41 characters (with EOS: 2 to 42 tokens), so that some are cut at seq_len 16:
// 15 chunks, packed into 11 rows.
std::vector<std::string> test_documents() {
    return {"the cat sat.", "a dog ran far away from the big red barn.", "hi", "on a mat, by the door.", "zebras run.",
            "quick brown fox jumps over lazy dogs, ok.", "no", "sun.", "x", "abc def ghi."};
}

void write_corpus(const fs::path & path, const std::vector<std::string> & docs) {
    std::string text;
    for (const std::string & d : docs) {
        text += json{{"text", d}}.dump() + "\n";
    }
    spit(path, text);
}

// hidden 32, 4 heads of 8 with 2 key/value heads, MLP 64, 2 layers (vocab from the tokenizer).
void write_model_config(const fs::path & path) {
    json c = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 32},
              {"intermediate_size", 64}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"num_hidden_layers", 2}, {"vocab_size", 100}, {"rms_norm_eps", 1e-5},
              {"max_position_embeddings", 64}, {"tie_word_embeddings", false}};
    spit(path, c.dump());
}

class Pretrain : public ::testing::Test {
protected:
    fs::path        dir;
    PretrainOptions o;

    void SetUp() override {
        dir = fresh_test_folder("paft-pretrain");
        write_char_tokenizer(dir / "tok");
        write_corpus(dir / "corpus.jsonl", test_documents());
        write_model_config(dir / "config.json");
        o.data                        = (dir / "corpus.jsonl").string();
        o.tokenizer_dir               = (dir / "tok").string();
        o.output_dir                  = (dir / "out").string();
        o.model_config                = (dir / "config.json").string();
        o.seq_len                     = 16;
        o.batch_size                  = 2;
        o.gradient_accumulation_steps = 2;
        o.learning_rate               = 3e-3;
        o.max_steps                   = 4;
        o.warmup_ratio                = 0.5;  // steps at 0, lr/2, then the cosine from lr
        o.weight_decay                = 0.1;
        o.max_grad_norm               = 1.0;
        o.adam_beta2                  = 0.95;
        o.seed                        = 5;
        o.threads                     = 2;
        o.logging_steps               = 1;
        o.plain_progress              = true;
    }

    RunResult run(const std::vector<std::string> & args) { return run_paft(args, dir); }

    std::vector<std::string> cli_args(const fs::path & out) const {
        return {"pretrain", "--data", o.data, "--tokenizer", o.tokenizer_dir, "--out", out.string(), "--model-config",
                o.model_config, "--seq-len", "16", "--batch-size", "2", "--max-steps", "4", "--threads", "2"};
    }
};

// The rows as (segment ids) lists, each segment one chunk of a document.
std::vector<std::vector<int32_t>> segments_of(const std::vector<PackedRow> & rows) {
    std::vector<std::vector<int32_t>> out;
    for (const PackedRow & r : rows) {
        size_t at = 0;
        for (int32_t n : r.seq_lengths) {
            out.emplace_back(r.input_ids.begin() + at, r.input_ids.begin() + at + n);
            at += n;
        }
    }
    return out;
}

}  // namespace

// Every document is cut into chunks of at most seq_len tokens (a last lone token dropped: it has
// nothing to predict), and the rows hold each chunk once, none longer than seq_len, positions
// restarting at every chunk and the chunk's first token never a target.
TEST_F(Pretrain, DocumentsAreCutIntoChunksAndPacked) {
    const Tokenizer        tok  = Tokenizer::load(o.tokenizer_dir);
    std::vector<PackedRow> rows = pretrain_rows(o, tok, tok.vocab_size());
    std::vector<std::vector<int32_t>> want;
    for (const std::string & d : test_documents()) {
        const std::vector<int32_t> ids = char_ids(d);
        for (size_t at = 0; at < ids.size(); at += 16) {
            if (ids.size() - at >= 2) {
                want.emplace_back(ids.begin() + at, ids.begin() + std::min(ids.size(), at + 16));
            }
        }
    }
    std::vector<std::vector<int32_t>> got = segments_of(rows);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want);
    for (const PackedRow & r : rows) {
        EXPECT_LE(r.input_ids.size(), 16u);
        size_t at = 0;
        for (int32_t n : r.seq_lengths) {
            EXPECT_EQ(r.position_ids[at], 0);
            EXPECT_EQ(r.position_ids[at + n - 1], n - 1);
            EXPECT_EQ(r.labels[at], -100);
            at += n;
        }
    }
    EXPECT_EQ(pretrain_model_config(o, tok).vocab_size, 3 + (int) kAlphabet.size());
    EXPECT_EQ(pretrain_model_config(o, tok).eos_token_id, kEos);
    EXPECT_EQ(pretrain_model_config(o, tok).bos_token_id, 1);
}

// Four steps (2 micro-batches of 2 rows, across an epoch boundary and its short last step, 2
// threads, warmup then cosine, clipping, decay on matrices only) against the float64 oracle fed
// the same initial weights and the rows in the order paft's epochs take them.
TEST_F(Pretrain, FourStepsMatchTheTorchOracle) {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const Tokenizer        tok  = Tokenizer::load(o.tokenizer_dir);
    std::vector<PackedRow> rows = pretrain_rows(o, tok, tok.vocab_size());
    const size_t           per_step = 4, steps_per_epoch = (rows.size() + per_step - 1) / per_step;
    ASSERT_EQ(steps_per_epoch, 3u) << rows.size() << " rows: the test wants an epoch boundary before step 4";
    ASSERT_NE(rows.size() % per_step, 0u) << "the test wants a short last step in the epoch";
    json steps = json::array();
    for (long s = 0; s < o.max_steps; s++) {
        const std::vector<size_t> order = epoch_order(rows.size(), o.seed, s / (long) steps_per_epoch);
        json                      step  = json::array();
        for (size_t i = (s % steps_per_epoch) * per_step; i < std::min(rows.size(), (s % steps_per_epoch + 1) * per_step); i++) {
            step.push_back({{"input_ids", rows[order[i]].input_ids}, {"seq_lengths", rows[order[i]].seq_lengths}});
        }
        steps.push_back(step);
    }
    Model::random(pretrain_model_config(o, tok), o.seed)->save((dir / "init").string(), DType::F32);
    json spec = {{"model", (dir / "init").string()}, {"steps", steps}, {"learning_rate", o.learning_rate},
                 {"lr_scheduler_type", o.lr_scheduler_type}, {"warmup_ratio", o.warmup_ratio},
                 {"weight_decay", o.weight_decay}, {"max_grad_norm", o.max_grad_norm}, {"adam_beta1", 0.9},
                 {"adam_beta2", o.adam_beta2}, {"adam_epsilon", 1e-8}, {"out", (dir / "want.safetensors").string()}};
    spit(dir / "spec.json", spec.dump());
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --spec '{}' 2>'{}'", kOracle, (dir / "spec.json").string(),
                                        (dir / "oracle.err").string());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << slurp(dir / "oracle.err");

    run_pretrain(o);
    const SafetensorsFile     want((dir / "want.safetensors").string());
    const std::vector<json>   log = json_lines(slurp(dir / "out/metrics.jsonl"));
    const std::vector<double> loss = read_f64(want, "loss"), norm = read_f64(want, "grad_norm"),
                              lr = read_f64(want, "learning_rate");
    ASSERT_EQ(log.size(), 4u);
    bool clipped = false;
    for (size_t s = 0; s < 4; s++) {
        SCOPED_TRACE(fmt::format("step {}", s + 1));
        EXPECT_EQ(log[s]["step"].get<long>(), (long) s + 1);
        EXPECT_NEAR(log[s]["loss"].get<double>(), loss[s], 1e-5 * loss[s]);
        EXPECT_NEAR(log[s]["grad_norm"].get<double>(), norm[s], 1e-4 * norm[s]);
        EXPECT_NEAR(log[s]["learning_rate"].get<double>(), lr[s], 1e-15);
        clipped = clipped || norm[s] > o.max_grad_norm;
    }
    EXPECT_TRUE(clipped) << "no step was clipped: the test would not see clipping";
    EXPECT_GT(lr[1], 0.0);
    // Final weights: per tensor, the largest difference relative to the tensor's largest value.
    const std::shared_ptr<Model> got   = Model::load_f32((dir / "out").string());
    double                       worst = 0;
    for (const ParamEntry & e : got->layout().entries()) {
        const std::vector<double> w = read_f64(want, e.name);
        ASSERT_EQ(w.size(), e.numel()) << e.name;
        double diff = 0, scale = 0;
        for (size_t i = 0; i < w.size(); i++) {
            diff  = std::max(diff, std::abs((double) got->data()[e.offset + i] - w[i]));
            scale = std::max(scale, std::abs(w[i]));
        }
        EXPECT_LE(diff, 1e-4 * scale) << e.name;
        worst = std::max(worst, diff / scale);
    }
    RecordProperty("worst_relative_weight_error", fmt::format("{:.3g}", worst));
    std::printf("worst relative weight error %.3g\n", worst);
}

// A run resumed from its checkpoint at step 2 (the later ones and the outputs gone, as when
// killed) ends with the same model and metrics, byte for byte, as the run never interrupted.
TEST_F(Pretrain, ResumeIsBitIdentical) {
    o.max_steps  = 6;
    o.save_steps = 2;
    run_pretrain(o);
    const std::string model = slurp(dir / "out/model.safetensors"), metrics = slurp(dir / "out/metrics.jsonl");
    ASSERT_TRUE(fs::exists(dir / "out/checkpoint-2"));
    for (const char * gone : {"checkpoint-4", "checkpoint-6", "model.safetensors", "config.json"}) {
        fs::remove_all(dir / "out" / gone);
    }
    expect_input_error([&] { run_pretrain(o); }, {"already holds a run", "--resume"});
    o.resume                = true;
    const PretrainSummary s = run_pretrain(o);
    EXPECT_TRUE(s.resumed);
    EXPECT_EQ(s.steps, 4);
    EXPECT_TRUE(slurp(dir / "out/model.safetensors") == model);
    EXPECT_EQ(slurp(dir / "out/metrics.jsonl"), metrics);
    // Other data is refused.
    write_corpus(dir / "corpus.jsonl", {"something else entirely."});
    fs::remove_all(dir / "out/checkpoint-6");
    expect_input_error([&] { run_pretrain(o); }, {"differ from the run being resumed"});
}

// The output is a model folder paft loads: config.json with the tokenizer's vocabulary and ids,
// the tokenizer's files, generation_config.json, the resolved options; bf16 on request.
TEST_F(Pretrain, WritesAModelFolder) {
    o.max_steps = 2;
    o.dtype     = "bf16";
    run_pretrain(o);
    const fs::path out = dir / "out";
    for (const char * f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "generation_config.json", "paft_pretrain.json", "metrics.jsonl", "checkpoint-2"}) {
        EXPECT_TRUE(fs::exists(out / f)) << f;
    }
    const json config = json::parse(slurp(out / "config.json"));
    EXPECT_EQ(config["vocab_size"], 3 + (int) kAlphabet.size());
    EXPECT_EQ(config["eos_token_id"], kEos);
    EXPECT_EQ(config["torch_dtype"], "bfloat16");
    EXPECT_EQ(json::parse(slurp(out / "generation_config.json"))["eos_token_id"], kEos);
    EXPECT_EQ(slurp(out / "tokenizer.json"), slurp(dir / "tok/tokenizer.json"));
    const json options = json::parse(slurp(out / "paft_pretrain.json"));
    EXPECT_EQ(options["seq_len"], 16);
    EXPECT_EQ(options["total_steps"], 2);
    EXPECT_EQ(SafetensorsFile((out / "model.safetensors").string()).find("lm_head.weight")->dtype, DType::BF16);
    EXPECT_NO_THROW(Model::load(out.string()));
}

// A corpus with one repeated sentence is learnt: the loss falls well below its start (ln 32 = 3.47).
TEST_F(Pretrain, LossFallsOnARepetitiveCorpus) {
    write_corpus(dir / "corpus.jsonl", std::vector<std::string>(40, "the cat sat on the mat."));
    o.max_steps     = 30;
    o.warmup_ratio  = 0.1;
    o.learning_rate = 1e-2;
    const PretrainSummary   s   = run_pretrain(o);
    const std::vector<json> log = json_lines(slurp(dir / "out/metrics.jsonl"));
    EXPECT_GT(log.front()["loss"].get<double>(), 3.0);
    EXPECT_LT(s.last_loss, 1.0);
    EXPECT_EQ(s.tokens, log.back()["num_tokens"].get<long>());
}

TEST_F(Pretrain, CliTrainsAndReports) {
    RunResult r = run(cli_args(dir / "cli"));
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.out.find("tok/s"), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(dir / "cli/model.safetensors"));
}

TEST_F(Pretrain, BadInputExitsWith2) {
    std::vector<std::string> args = cli_args(dir / "bad");
    auto with = [&](size_t at, const std::string & value) {
        std::vector<std::string> a = args;
        a[at]                      = value;
        return a;
    };
    expect_input_error(run(with(2, (dir / "missing.jsonl").string())), {"missing.jsonl"});
    spit(dir / "broken.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"cd\"\n");
    expect_input_error(run(with(2, (dir / "broken.jsonl").string())), {"broken.jsonl:2"});
    spit(dir / "empty.jsonl", "");
    expect_input_error(run(with(2, (dir / "empty.jsonl").string())), {"empty.jsonl", "no document"});
    spit(dir / "fields.jsonl", "{\"text\": \"ab\"}\n{\"content\": \"cd\"}\n");
    expect_input_error(run(with(2, (dir / "fields.jsonl").string())), {"fields.jsonl:2", "'text'"});
    spit(dir / "number.jsonl", "{\"text\": 5}\n");
    expect_input_error(run(with(2, (dir / "number.jsonl").string())), {"number.jsonl:1", "text"});
    spit(dir / "ids.jsonl", "{\"input_ids\": [3, 4, 5]}\n{\"input_ids\": [3, 400]}\n");
    expect_input_error(run(with(2, (dir / "ids.jsonl").string())), {"ids.jsonl:2", "input_ids", "400"});
    expect_input_error(run(with(4, (dir / "nothing").string())), {"nothing"});
    expect_input_error(run(with(10, "100")), {"--seq-len", "max_position_embeddings"});
    expect_input_error(run(with(10, "1")), {"--seq-len"});
    std::vector<std::string> dtype = args;
    dtype.insert(dtype.end(), {"--dtype", "f16"});
    expect_input_error(run(dtype), {"--dtype"});
    EXPECT_FALSE(fs::exists(dir / "bad/model.safetensors"));
}

// Pre-tokenized documents need no text path and train the same as the text they encode.
TEST_F(Pretrain, PretokenizedDocumentsEqualTheirText) {
    std::string ids;
    for (const std::string & d : test_documents()) {
        ids += json{{"input_ids", char_ids(d)}}.dump() + "\n";
    }
    spit(dir / "ids.jsonl", ids);
    o.max_steps = 2;
    run_pretrain(o);
    PretrainOptions p = o;
    p.data            = (dir / "ids.jsonl").string();
    p.output_dir      = (dir / "ids").string();
    run_pretrain(p);
    EXPECT_TRUE(slurp(dir / "out/model.safetensors") == slurp(dir / "ids/model.safetensors"));
}
