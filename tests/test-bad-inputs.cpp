// Bad input fed to the program, as a user would feed it: each case writes its files into a fresh
// folder, runs one command, and expects an exit code, a message naming what is wrong, and no
// output left behind (the folder holds afterwards exactly what the case wrote). The start of the
// corpus issue 18 asks for; its cases so far: JSON nested past kMaxJsonDepth (512 levels) in
// every kind of JSON file paft reads, which overflowed the stack before (SIGSEGV); a safetensors
// file with bytes after its data; max_position_embeddings 0; two tokens with one id; an
// adapter_config.json naming a module its weights lack; an empty chat template file; outputs that
// are, contain or lie inside the command's inputs.
#include "io/json_depth.h"
#include "io/nonfinite.h"
#include "io/output_lock.h"
#include "model/config.h"
#include "model/lora.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <functional>
#include <set>
#include <span>
#include <thread>

namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny";

// A value nested `levels` deep: [[[...]]].
std::string nested(int levels) { return std::string((size_t) levels, '[') + std::string((size_t) levels, ']'); }

const std::string kDeep = nested(50000);  // 100 KB

std::set<std::string> listing(const fs::path & dir) {
    std::set<std::string> names;
    for (const auto & e : fs::recursive_directory_iterator(dir)) {
        names.insert(fs::relative(e.path(), dir).string());
    }
    return names;
}

// A copy of the tiny model with one of its files replaced.
void model_with(const fs::path & dir, const std::string & file, const std::string & text) {
    fs::create_directories(dir);
    for (const auto & e : fs::directory_iterator(kTiny)) {
        fs::copy_file(e.path(), dir / e.path().filename());
    }
    spit(dir / file, text);
}

// The tiny model's config.json with one field set.
std::string config_with(const std::string & key, const nlohmann::json & value) {
    nlohmann::json c = nlohmann::json::parse(slurp(fs::path(kTiny) / "config.json"));
    c[key]           = value;
    return c.dump();
}

struct BadCase {
    std::string                                   name;
    std::function<void(const fs::path &)>         files;  // writes the case's inputs into the folder
    std::function<std::vector<std::string>(const fs::path &)> args;
    int                                           exit_code;
    std::vector<std::string>                      needles;  // in the message
};

std::vector<BadCase> cases() {
    const std::string deep_message = "nested deeper than 512 levels";
    auto record = [](const std::string & field) { return "{\"" + field + "\": " + kDeep + "}\n"; };
    return {
        {"sft: a record's input_ids", [&](const fs::path & d) { spit(d / "data.jsonl", record("input_ids")); },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", kTiny, "--data", (d / "data.jsonl").string(),
                                             "--out", (d / "out").string()};
         },
         2, {"data.jsonl:1", deep_message}},
        {"sft: an unused field, second line",
         [&](const fs::path & d) {
             spit(d / "data.jsonl", "{\"input_ids\": [3, 4, 5]}\n{\"input_ids\": [3, 4], \"note\": " + kDeep + "}\n");
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", kTiny, "--data", (d / "data.jsonl").string(),
                                             "--out", (d / "out").string()};
         },
         2, {"data.jsonl:2", deep_message}},
        {"sft: a JSON array file", [&](const fs::path & d) { spit(d / "data.json", "[{\"text\": " + kDeep + "}]"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", kTiny, "--data", (d / "data.json").string(),
                                             "--out", (d / "out").string()};
         },
         2, {"data.json", deep_message}},
        {"dpo: a record's chosen", [&](const fs::path & d) { spit(d / "pref.jsonl", record("chosen")); },
         [](const fs::path & d) {
             return std::vector<std::string>{"dpo", "--model", kTiny, "--data", (d / "pref.jsonl").string(),
                                             "--out", (d / "out").string()};
         },
         2, {"pref.jsonl:1", deep_message}},
        {"generate: a record's prompt", [&](const fs::path & d) { spit(d / "in.jsonl", record("prompt")); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", kTiny, "--data", (d / "in.jsonl").string(),
                                             "--out", (d / "out.jsonl").string()};
         },
         2, {"in.jsonl:1", deep_message}},
        {"score: a line", [&](const fs::path & d) { spit(d / "ids.jsonl", record("input_ids")); },
         [](const fs::path & d) {
             return std::vector<std::string>{"score", "--model", kTiny, "--data", (d / "ids.jsonl").string()};
         },
         2, {"ids.jsonl:1", deep_message}},
        {"eval: a document of a YAML task",
         [&](const fs::path & d) {
             spit(d / "task.yaml", "task: deep\ndataset_path: docs.jsonl\noutput_type: "
                                   "multiple_choice\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: c\ndoc_to_target: a\n");
             spit(d / "docs.jsonl", "{\"q\": \"x\", \"c\": [\"a\", \"b\"], \"a\": 0, \"extra\": " + kDeep + "}\n");
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"eval", "--model", kTiny, "--tasks", (d / "task.yaml").string(),
                                             "--out", (d / "results.json").string()};
         },
         2, {"docs.jsonl:1", deep_message}},
        {"a model's config.json", [&](const fs::path & d) { model_with(d / "m", "config.json", "{\"a\": " + kDeep + "}"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"config.json", deep_message}},
        {"a model's tokenizer_config.json",
         [&](const fs::path & d) { model_with(d / "m", "tokenizer_config.json", "{\"a\": " + kDeep + "}"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"tokenizer_config.json", deep_message}},
        {"a model's tokenizer.json",
         [&](const fs::path & d) { model_with(d / "m", "tokenizer.json", "{\"a\": " + kDeep + "}"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"tokenizer.json", deep_message}},
        {"an adapter's adapter_config.json",
         [&](const fs::path & d) {
             fs::create_directories(d / "adapter");
             spit(d / "adapter/adapter_config.json", "{\"r\": " + kDeep + "}");
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", kTiny, "--adapter", (d / "adapter").string(),
                                             "--prompt", "hi"};
         },
         2, {"adapter_config.json", deep_message}},
        {"a safetensors header",
         [&](const fs::path & d) {
             const std::string header = "{\"a\": " + kDeep + "}";
             std::string       file(8, '\0');
             const uint64_t    n = header.size();
             std::memcpy(file.data(), &n, 8);
             model_with(d / "m", "model.safetensors", file + header);
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"model.safetensors", deep_message}},
        {"config.json: max_position_embeddings 0",
         [&](const fs::path & d) { model_with(d / "m", "config.json", config_with("max_position_embeddings", 0)); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"config.json", "max_position_embeddings must be positive"}},
        {"safetensors: 8000 bytes of garbage after the data",
         [&](const fs::path & d) {
             model_with(d / "m", "model.safetensors",
                        slurp(fs::path(kTiny) / "model.safetensors") + std::string(8000, 'g'));
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", (d / "m").string(), "--data",
                                             std::string(PAFT_SOURCE_DIR) + "/tests/data/datasets/sft.jsonl", "--out",
                                             (d / "out").string()};
         },
         2, {"model.safetensors", "8000 bytes after the last tensor"}},
        {"tokenizer.json: two tokens with one id",
         [&](const fs::path & d) {
             nlohmann::ordered_json t = nlohmann::ordered_json::parse(slurp(fs::path(kTiny) / "tokenizer.json"));
             auto &                 vocab = t["model"]["vocab"];
             const int              first = vocab.begin().value().get<int>();
             vocab["zzduplicate"]         = first;
             model_with(d / "m", "tokenizer.json", t.dump());
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", (d / "m").string(), "--prompt", "hi"};
         },
         2, {"tokenizer.json", "zzduplicate", "both have id"}},
        {"sparsity: adapter_config.json targets a module the weights lack",
         [&](const fs::path & d) {
             spit(d / "data.jsonl", "{\"input_ids\": [3, 4, 5, 6, 7]}\n");
             const RunResult r = run_paft({"sft", "--model", kTiny, "--data", (d / "data.jsonl").string(), "--out",
                                           (d / "adapter").string(), "--max-steps", "1", "--threads", "1",
                                           "--lora-target-modules", "q_proj,v_proj"},
                                          d);
             ASSERT_EQ(r.code, 0) << describe(r);
             nlohmann::json c = nlohmann::json::parse(slurp(d / "adapter/adapter_config.json"));
             c["target_modules"].push_back("gate_proj");
             spit(d / "adapter/adapter_config.json", c.dump());
         },
         [](const fs::path & d) { return std::vector<std::string>{"sparsity", (d / "adapter").string()}; },
         2, {"adapter", "targets 'gate_proj'", "no lora_A/lora_B"}},
        {"sft: an empty chat template file",
         [&](const fs::path & d) {
             spit(d / "empty.jinja", "  \n");
             spit(d / "chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                                    "{\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", kTiny, "--data", (d / "chat.jsonl").string(),
                                             "--chat-template", (d / "empty.jinja").string(), "--out",
                                             (d / "out").string()};
         },
         2, {"empty.jinja", "empty"}},
        // Inputs are never written over, whatever --overwrite says.
        {"score --out its own --data", [&](const fs::path & d) { spit(d / "ids.jsonl", "{\"input_ids\": [3, 4, 5]}\n"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"score", "--model", kTiny, "--data", (d / "ids.jsonl").string(), "--out",
                                             (d / "ids.jsonl").string()};
         },
         2, {"--out", "is --data", "choose another output"}},
        {"eval --out inside the model", [&](const fs::path & d) { model_with(d / "m", "config.json", slurp(fs::path(kTiny) / "config.json")); },
         [](const fs::path & d) {
             return std::vector<std::string>{"eval", "--model", (d / "m").string(), "--tasks", "arc_easy", "--data-dir",
                                             std::string(PAFT_SOURCE_DIR) + "/tests/data/eval", "--out",
                                             (d / "m/config.json").string()};
         },
         2, {"--out", "lies inside --model"}},
        {"sft --out the base model's folder",
         [&](const fs::path & d) {
             model_with(d / "m", "config.json", slurp(fs::path(kTiny) / "config.json"));
             spit(d / "data.jsonl", "{\"input_ids\": [3, 4, 5]}\n");
         },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", (d / "m").string(), "--data", (d / "data.jsonl").string(),
                                             "--out", (d / "m").string()};
         },
         2, {"output_dir (--out)", "is model_name_or_path"}},
        {"sft --out a folder holding its data",
         [&](const fs::path & d) { spit(d / "data.jsonl", "{\"input_ids\": [3, 4, 5]}\n"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"sft", "--model", kTiny, "--data", (d / "data.jsonl").string(), "--out",
                                             d.string()};
         },
         2, {"output_dir (--out)", "contains train_data"}},
        {"generate --out its --data, with --overwrite",
         [&](const fs::path & d) { spit(d / "in.jsonl", "{\"prompt\": \"hi\"}\n"); },
         [](const fs::path & d) {
             return std::vector<std::string>{"generate", "--model", kTiny, "--data", (d / "in.jsonl").string(), "--out",
                                             (d / "in.jsonl").string(), "--overwrite"};
         },
         2, {"--out", "is --data"}},
    };
}

}  // namespace

TEST(JsonDepth, CountsBracketsOutsideStrings) {
    EXPECT_EQ(paft::json_depth("{}"), 1);
    EXPECT_EQ(paft::json_depth("{\"a\": [1, {\"b\": []}]}"), 4);
    EXPECT_EQ(paft::json_depth("{\"a\": \"[[[[{{{{\"}"), 1);           // inside a string
    EXPECT_EQ(paft::json_depth("{\"a\": \"\\\"[[[[\"}"), 1);           // after an escaped quote
    EXPECT_EQ(paft::json_depth("[\"\\\\\", [[]]]"), 3);                 // an escaped backslash ends the string
    EXPECT_EQ(paft::json_depth(nested(512)), 512);
    EXPECT_EQ(paft::json_depth(nested(513)), 513);
    EXPECT_EQ(paft::json_depth(nested(100000)), paft::kMaxJsonDepth + 1);  // stops counting
    EXPECT_NO_THROW(paft::check_json_depth(nested(512), "x"));
    EXPECT_THROW(paft::check_json_depth(nested(513), "x"), paft::InputError);
}

TEST(BadInputs, RefusedWithTheirMessageAndNothingLeft) {
    for (const BadCase & c : cases()) {
        SCOPED_TRACE(c.name);
        const fs::path dir = fresh_test_folder("paft-bad");
        c.files(dir);
        const std::set<std::string> before = listing(dir);
        const RunResult             r      = run_paft(c.args(dir), dir);
        EXPECT_EQ(r.code, c.exit_code) << describe(r);
        for (const std::string & needle : c.needles) {
            EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr lacks \"" << needle << "\"\n" << describe(r);
        }
        EXPECT_EQ(listing(dir), before) << "files left behind";
    }
}

TEST(BadInputs, JustUnderTheBoundIsRead) {
    const fs::path dir = fresh_test_folder("paft-bad");
    // The record is 512 levels deep: itself, and 511 in its unused field.
    spit(dir / "data.jsonl", "{\"input_ids\": [3, 4, 5, 6], \"note\": " + nested(511) + "}\n");
    const RunResult r = run_paft({"sft", "--model", kTiny, "--data", (dir / "data.jsonl").string(), "--out",
                                  (dir / "out").string(), "--max-steps", "1", "--threads", "1"},
                                 dir);
    EXPECT_EQ(r.code, 0) << describe(r);
}

// transformers warns when bos_token is not in the vocabulary and goes on without it; so does paft.
TEST(BadInputs, UnknownBosTokenIsAWarning) {
    const fs::path dir = fresh_test_folder("paft-bad");
    nlohmann::json c   = nlohmann::json::parse(slurp(fs::path(kTiny) / "tokenizer_config.json"));
    c["bos_token"]     = "<not-a-token>";
    model_with(dir / "m", "tokenizer_config.json", c.dump());
    const RunResult r = run_paft({"generate", "--model", (dir / "m").string(), "--prompt", "hi", "--max-new-tokens",
                                  "2", "--threads", "1"},
                                 dir);
    EXPECT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.err.find("warning: " + (dir / "m/tokenizer_config.json").string() +
                         ": bos_token '<not-a-token>' is not in the vocabulary"),
              std::string::npos)
        << r.err;
}

// A second writer of an output folder is refused while the first runs, naming it; a lock file left
// by a killed run is taken over.
TEST(BadInputs, AnOutputFolderHasOneWriter) {
    const fs::path dir = fresh_test_folder("paft-bad");
    spit(dir / "data.jsonl", "{\"input_ids\": [3, 4, 5, 6, 7, 8, 9, 10]}\n");
    auto args = [&](const std::string & steps) {
        return std::vector<std::string>{"sft", "--model", kTiny, "--data", (dir / "data.jsonl").string(), "--out",
                                        (dir / "out").string(), "--max-steps", steps, "--threads", "1", "--resume"};
    };
    const pid_t first = spawn_paft(args("100000"), dir / "first.log");
    for (int i = 0; i < 600 && !fs::exists(dir / "out/.paft.lock"); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(fs::exists(dir / "out/.paft.lock"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const RunResult second = run_paft(args("2"), dir);
    EXPECT_EQ(second.code, 2) << describe(second);
    EXPECT_NE(second.err.find("is being written by pid " + std::to_string(first)), std::string::npos) << second.err;
    EXPECT_NE(second.err.find("paft sft"), std::string::npos) << second.err;  // the holder's command
    kill(first, SIGKILL);
    int status = 0;
    waitpid(first, &status, 0);
    ASSERT_TRUE(fs::exists(dir / "out/.paft.lock"));  // left by the killed run
    const RunResult third = run_paft(args("2"), dir);
    EXPECT_EQ(third.code, 0) << describe(third);
    EXPECT_FALSE(fs::exists(dir / "out/.paft.lock"));  // removed when the run ends
}

namespace {

// Sets element `index` of tensor `name` (F32) in the safetensors file at `path` to `value`: the
// header read by hand (8-byte length, JSON), the data offsets from it.
void poke_f32(const fs::path & path, const std::string & name, size_t index, float value) {
    std::string    bytes = slurp(path);
    uint64_t       header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    const auto     header = nlohmann::json::parse(bytes.substr(8, header_len));
    ASSERT_EQ(header.at(name).at("dtype"), "F32");
    const size_t at = 8 + header_len + header.at(name).at("data_offsets")[0].get<size_t>() + 4 * index;
    std::memcpy(bytes.data() + at, &value, 4);
    spit(path, bytes);
}

// A rank-4 adapter of the tiny model (q_proj, v_proj) with B set, so that it changes the model.
void tiny_adapter(const fs::path & dir, uint64_t seed) {
    paft::LoraConfig lora;
    lora.r       = 4;
    lora.alpha   = 8.0f;
    lora.targets = paft::parse_lora_targets("q_proj,v_proj");
    paft::LoraAdapter adapter(paft::load_model_config(kTiny), lora);
    adapter.init_peft(seed);
    for (float & v : adapter.params()) {
        if (v == 0.0f) v = 0.01f;
    }
    adapter.save(dir.string(), kTiny);
}

const std::string kQProj0 = "model.layers.0.self_attn.q_proj.weight";
const std::string kAdapterA0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

}  // namespace

// NaN or Inf in a weight read is an error naming the file, the tensor and the count, whatever
// the command; --allow-nonfinite reads it, and then a non-finite result is still refused unless the
// same flag says to write it.
TEST(NonFinite, InBaseWeightsIsAnErrorNamingTheTensor) {
    const fs::path dir = fresh_test_folder("paft-nonfinite");
    model_with(dir / "m", "config.json", slurp(fs::path(kTiny) / "config.json"));
    poke_f32(dir / "m/model.safetensors", kQProj0, 5, std::numeric_limits<float>::quiet_NaN());
    poke_f32(dir / "m/model.safetensors", kQProj0, 9, std::numeric_limits<float>::infinity());
    spit(dir / "ids.jsonl", "{\"input_ids\": [3, 4, 5, 6]}\n");
    const std::set<std::string> before = listing(dir);
    for (const std::vector<std::string> & args :
         {std::vector<std::string>{"score", "--model", (dir / "m").string(), "--data", (dir / "ids.jsonl").string()},
          std::vector<std::string>{"generate", "--model", (dir / "m").string(), "--prompt", "hi"},
          std::vector<std::string>{"sft", "--model", (dir / "m").string(), "--data", (dir / "ids.jsonl").string(), "--out",
                                   (dir / "out").string(), "--max-steps", "1"},
          std::vector<std::string>{"export", "--model", (dir / "m").string(), "--out", (dir / "m.gguf").string()},
          std::vector<std::string>{"eval", "--model", (dir / "m").string(), "--tasks", "arc_easy", "--data-dir",
                                   std::string(PAFT_SOURCE_DIR) + "/tests/data/eval", "--limit", "2", "--out",
                                   (dir / "r.json").string()}}) {
        SCOPED_TRACE(args[0]);
        const RunResult r = run_paft(args, dir);
        expect_input_error(r, {"model.safetensors", "tensor '" + kQProj0 + "' has 2 non-finite values",
                               "--allow-nonfinite"});
        EXPECT_EQ(listing(dir), before) << "files left behind";
    }
    // Read anyway: the NaN reaches the log-probabilities, which are not written either.
    const RunResult allowed = run_paft({"score", "--model", (dir / "m").string(), "--data", (dir / "ids.jsonl").string(),
                                        "--allow-nonfinite", "--out", (dir / "scores.jsonl").string()},
                                       dir);
    EXPECT_EQ(allowed.code, 0) << describe(allowed);
    EXPECT_TRUE(fs::exists(dir / "scores.jsonl"));
}

TEST(NonFinite, InAnAdapterIsAnErrorAndNoMergeHidesIt) {
    const fs::path dir = fresh_test_folder("paft-nonfinite");
    tiny_adapter(dir / "a", 1);
    tiny_adapter(dir / "b", 2);
    poke_f32(dir / "b/adapter_model.safetensors", kAdapterA0, 0, std::numeric_limits<float>::quiet_NaN());
    const std::set<std::string> before = listing(dir);
    // TIES used to drop the NaN in its sign election and write a clean-looking model; linear wrote NaN.
    for (const std::string method : {"ties", "linear", "task_arithmetic", "dare_ties"}) {
        SCOPED_TRACE(method);
        const RunResult r = run_paft({"merge", "--base", kTiny, "--adapter", (dir / "a").string(), "--adapter",
                                      (dir / "b").string(), "--method", method, "--out", (dir / "out").string()},
                                     dir);
        expect_input_error(r, {"adapter_model.safetensors", kAdapterA0, "1 non-finite value"});
        EXPECT_EQ(listing(dir), before) << "files left behind";
    }
    const RunResult generate = run_paft({"generate", "--model", kTiny, "--adapter", (dir / "b").string(), "--prompt",
                                         "hi", "--max-new-tokens", "2"},
                                        dir);
    expect_input_error(generate, {"adapter_model.safetensors", kAdapterA0});
}

// Finite inputs whose merge overflows: the merged tensor is refused (exit 1), nothing written.
TEST(NonFinite, AMergeThatOverflowsWritesNothing) {
    const fs::path dir = fresh_test_folder("paft-nonfinite");
    tiny_adapter(dir / "a", 1);
    const RunResult r = run_paft({"merge", "--base", kTiny, "--adapter", (dir / "a").string(), "--method",
                                  "task_arithmetic", "--weight", "1e300", "--out", (dir / "out").string()},
                                 dir);
    EXPECT_EQ(r.code, 1) << describe(r);
    EXPECT_NE(r.err.find("merged tensor"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("non-finite"), std::string::npos) << r.err;
    EXPECT_EQ(listing(dir), (std::set<std::string>{"a", "a/adapter_config.json", "a/adapter_model.safetensors"}));
}

TEST(BadInputs, HugeAdapterSettingsNameTheirField) {
    const fs::path dir = fresh_test_folder("paft-bad");
    tiny_adapter(dir / "a", 1);
    nlohmann::json c = nlohmann::json::parse(slurp(dir / "a/adapter_config.json"));
    c["lora_alpha"]  = 1e308;
    spit(dir / "a/adapter_config.json", c.dump());
    const RunResult alpha = run_paft({"generate", "--model", kTiny, "--adapter", (dir / "a").string(), "--prompt", "hi"}, dir);
    expect_input_error(alpha, {"adapter_config.json", "lora_alpha", "finite float32"});

    spit(dir / "data.jsonl", "{\"input_ids\": [3, 4, 5]}\n");
    const RunResult rank = run_paft({"sft", "--model", kTiny, "--data", (dir / "data.jsonl").string(), "--out",
                                     (dir / "out").string(), "--lora-r", "1000000000", "--max-steps", "1"},
                                    dir);
    expect_input_error(rank, {"lora_r 1000000000", "GB to train", "this machine has"});
    EXPECT_FALSE(fs::exists(dir / "out"));
}

// The "billion laughs": 30 lines of aliases would be a billion values to any reader walking them.
TEST(BadInputs, AYamlAliasBombIsRefused) {
    const fs::path dir  = fresh_test_folder("paft-bad");
    std::string    yaml = "l0: &l0 [x, x]\n";
    for (int i = 1; i < 30; i++) {
        yaml += fmt::format("l{}: &l{} [*l{}, *l{}]\n", i, i, i - 1, i - 1);
    }
    spit(dir / "recipe.yaml", yaml + "learning_rate: *l29\n");
    spit(dir / "data.jsonl", "{\"input_ids\": [3, 4, 5]}\n");
    const RunResult r = run_paft({"sft", "--config", (dir / "recipe.yaml").string(), "--model", kTiny, "--data",
                                  (dir / "data.jsonl").string(), "--out", (dir / "out").string()},
                                 dir);
    expect_input_error(r, {"recipe.yaml", "aliases", "expanded"});
    EXPECT_FALSE(fs::exists(dir / "out"));
}

// A training run that stops (here on a NaN loss) leaves its last checkpoint and the metrics up to
// it, or, with none, nothing at all.
TEST(BadInputs, ANanStopLeavesTheLastCheckpointOrNothing) {
    const fs::path dir = fresh_test_folder("paft-bad");
    spit(dir / "data.jsonl", "{\"input_ids\": [3, 4, 5, 6, 7, 8]}\n{\"input_ids\": [9, 10, 11, 12]}\n");
    auto run = [&](const std::string & out, const std::string & save_steps) {
        return run_paft({"sft", "--model", kTiny, "--data", (dir / "data.jsonl").string(), "--out", (dir / out).string(),
                         "--max-steps", "6", "--learning-rate", "1e30", "--threads", "1", "--save-steps", save_steps,
                         "--logging-steps", "1"},
                        dir);
    };
    const RunResult none = run("none", "0");
    EXPECT_EQ(none.code, 1) << describe(none);
    EXPECT_NE(none.err.find("the loss is -nan"), std::string::npos) << none.err;
    EXPECT_FALSE(fs::exists(dir / "none")) << "the run's folder was left";

    // DPO also caches the reference log-probabilities before its first step: gone too.
    const RunResult dpo = run_paft({"dpo", "--model", kTiny, "--data", std::string(PAFT_SOURCE_DIR) +
                                    "/tests/data/datasets/pref.jsonl", "--out", (dir / "dpo").string(), "--max-steps",
                                    "6", "--learning-rate", "1e30", "--threads", "1"},
                                   dir);
    EXPECT_EQ(dpo.code, 1) << describe(dpo);
    EXPECT_FALSE(fs::exists(dir / "dpo")) << "the run's folder was left";

    const RunResult some = run("some", "1");
    EXPECT_EQ(some.code, 1) << describe(some);
    ASSERT_TRUE(fs::exists(dir / "some/checkpoint-1"));
    // metrics.jsonl holds the lines up to the last checkpoint, as --resume would continue it.
    const std::vector<nlohmann::json> lines = json_lines(slurp(dir / "some/metrics.jsonl"));
    long last_checkpoint = 0;
    for (const auto & e : fs::directory_iterator(dir / "some")) {
        const std::string n = e.path().filename().string();
        if (n.rfind("checkpoint-", 0) == 0) last_checkpoint = std::max(last_checkpoint, std::stol(n.substr(11)));
    }
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back()["step"].get<long>(), last_checkpoint);
    EXPECT_FALSE(fs::exists(dir / "some/adapter_model.safetensors"));
}

// init-model and pretrain replace a folder's model files only when told to.
TEST(BadInputs, AnExistingModelIsReplacedOnlyWithOverwrite) {
    const fs::path dir = fresh_test_folder("paft-bad");
    model_with(dir / "m", "config.json", slurp(fs::path(kTiny) / "config.json"));
    const std::string weights = slurp(dir / "m/model.safetensors");
    const RunResult   init    = run_paft({"init-model", "--preset", "tiny", "--out", (dir / "m").string()}, dir);
    expect_input_error(init, {"--out", "already holds files", "--overwrite"});
    spit(dir / "corpus.jsonl", "{\"text\": \"a b c d e f g\"}\n");
    const RunResult pretrain = run_paft({"pretrain", "--data", (dir / "corpus.jsonl").string(), "--tokenizer", kTiny,
                                         "--preset", "tiny", "--out", (dir / "m").string(), "--max-steps", "1"},
                                        dir);
    expect_input_error(pretrain, {"--out", "already holds files", "--overwrite"});
    EXPECT_EQ(slurp(dir / "m/model.safetensors"), weights);
    EXPECT_EQ(slurp(dir / "m/metrics.jsonl"), slurp(fs::path(kTiny) / "metrics.jsonl"));
    const RunResult replaced = run_paft({"init-model", "--preset", "tiny", "--out", (dir / "m").string(), "--overwrite"}, dir);
    EXPECT_EQ(replaced.code, 0) << describe(replaced);
    EXPECT_NE(slurp(dir / "m/model.safetensors"), weights);
}

// merge --overwrite never deletes what the merge reads.
TEST(BadInputs, AMergeNeverWritesOverItsInputs) {
    const fs::path dir = fresh_test_folder("paft-bad");
    model_with(dir / "m", "config.json", slurp(fs::path(kTiny) / "config.json"));
    tiny_adapter(dir / "a", 1);
    const std::set<std::string> before = listing(dir);
    for (const std::string & out : {(dir / "m").string(), (dir / "a").string(), dir.string()}) {
        SCOPED_TRACE(out);
        const RunResult r = run_paft({"merge", "--base", (dir / "m").string(), "--adapter", (dir / "a").string(),
                                      "--out", out, "--overwrite"},
                                     dir);
        expect_input_error(r, {"--out", "which this command reads"});
        EXPECT_EQ(listing(dir), before);
    }
}

// Outputs replaced whole (merge, eval, generate) are locked beside them while written: a second
// writer is refused, naming the holder.
TEST(BadInputs, OutputsWrittenWholeAreLockedBesideThem) {
    const fs::path dir = fresh_test_folder("paft-bad");
    tiny_adapter(dir / "a", 1);
    spit(dir / "in.jsonl", "{\"prompt\": \"hi\"}\n");
    const std::string holder = "pid " + std::to_string(getpid());
    {
        paft::OutputLock lock((dir / "merged").string(), paft::LockPlace::beside);
        const RunResult  r = run_paft({"merge", "--base", kTiny, "--adapter", (dir / "a").string(), "--out",
                                       (dir / "merged").string()},
                                      dir);
        expect_input_error(r, {"merged", "is being written by " + holder});
    }
    {
        paft::OutputLock lock((dir / "r.json").string(), paft::LockPlace::beside);
        const RunResult  r = run_paft({"eval", "--model", kTiny, "--tasks", "arc_easy", "--data-dir",
                                       std::string(PAFT_SOURCE_DIR) + "/tests/data/eval", "--limit", "1", "--out",
                                       (dir / "r.json").string()},
                                      dir);
        expect_input_error(r, {"r.json", "is being written by " + holder});
    }
    {
        paft::OutputLock lock((dir / "out.jsonl").string(), paft::LockPlace::beside);
        const RunResult  r = run_paft({"generate", "--model", kTiny, "--data", (dir / "in.jsonl").string(), "--out",
                                       (dir / "out.jsonl").string(), "--max-new-tokens", "2"},
                                      dir);
        expect_input_error(r, {"out.jsonl", "is being written by " + holder});
    }
    EXPECT_EQ(listing(dir), (std::set<std::string>{"a", "a/adapter_config.json", "a/adapter_model.safetensors", "in.jsonl"}));
    // Unlocked, the same merge runs and leaves no lock file.
    const RunResult ok = run_paft({"merge", "--base", kTiny, "--adapter", (dir / "a").string(), "--out",
                                   (dir / "merged").string()},
                                  dir);
    EXPECT_EQ(ok.code, 0) << describe(ok);
    EXPECT_FALSE(fs::exists(dir / ".merged.paft-lock"));
}

// The exponent-all-ones test of each dtype's bit layout, on values written by hand.
TEST(NonFinite, CountsEachDtypesNanAndInf) {
    auto bytes_of = [](const auto & values) {
        const auto * p = reinterpret_cast<const uint8_t *>(values.data());
        return std::span<const uint8_t>(p, values.size() * sizeof(values[0]));
    };
    // bf16: +inf, nan, -inf, 1.0, the largest finite (0x7F7F), -0
    const std::vector<uint16_t> bf16 = {0x7F80, 0x7FC0, 0xFF80, 0x3F80, 0x7F7F, 0x8000};
    EXPECT_EQ(paft::count_nonfinite(paft::DType::BF16, bytes_of(bf16)), 3u);
    // f16: +inf, nan, 1.0, 65504 (0x7BFF, the largest finite)
    const std::vector<uint16_t> f16 = {0x7C00, 0x7E00, 0x3C00, 0x7BFF};
    EXPECT_EQ(paft::count_nonfinite(paft::DType::F16, bytes_of(f16)), 2u);
    const std::vector<float> f32 = {1.0f, std::numeric_limits<float>::max(), -std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()};
    EXPECT_EQ(paft::count_nonfinite(paft::DType::F32, bytes_of(f32)), 2u);
    EXPECT_EQ(paft::count_nonfinite(f32.data(), f32.size()), 2u);
    const std::vector<double> f64 = {1e308, std::numeric_limits<double>::infinity(), 0.0};
    EXPECT_EQ(paft::count_nonfinite(paft::DType::F64, bytes_of(f64)), 1u);
    EXPECT_THROW(paft::check_finite_input(1, "f", "t"), paft::InputError);
    EXPECT_NO_THROW(paft::check_finite_input(0, "f", "t"));
    EXPECT_THROW(paft::check_finite_result(2, "merged tensor 't'"), paft::RuntimeFailure);
    paft::set_nonfinite_allowed(true);
    EXPECT_NO_THROW(paft::check_finite_input(1, "f", "t"));
    EXPECT_NO_THROW(paft::check_finite_result(2, "x"));
    paft::set_nonfinite_allowed(false);
}
