// Bad input fed to the program, as a user would feed it: each case writes its files into a fresh
// folder, runs one command, and expects an exit code, a message naming what is wrong, and no
// output left behind (the folder holds afterwards exactly what the case wrote). The start of the
// corpus issue 18 asks for; its cases so far: JSON nested past kMaxJsonDepth (512 levels) in
// every kind of JSON file paft reads, which overflowed the stack before (SIGSEGV); a safetensors
// file with bytes after its data; max_position_embeddings 0; two tokens with one id; an
// adapter_config.json naming a module its weights lack; an empty chat template file; outputs that
// are, contain or lie inside the command's inputs.
#include "io/json_depth.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
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
