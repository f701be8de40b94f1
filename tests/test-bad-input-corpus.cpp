// The corpus of bad inputs (tests/data/bad_inputs/*.yaml): each case writes its files into a fresh
// folder, runs one paft command, and expects an exit code, substrings of the message, and nothing
// left behind (the folder holds afterwards exactly what the case wrote). A case is a YAML mapping:
//
//   - name: "config.json: hidden_size is a string"     # says what is wrong
//     model: {config: {hidden_size: "128"}}            # DIR/m: the tiny model, files patched
//     adapter: {config: {r: 0}}                        # DIR/adapter: a small PEFT adapter of it
//     files: {data.jsonl: "{\"text\": 1}\n"}           # written as given
//     args: [generate, --model, "{dir}/m", --prompt, hi]
//     exit: 2
//     message: [config.json, hidden_size]
//
// model: patches config.json and tokenizer_config.json key by key (null removes a key),
// tokenizer.json by JSON pointer ("/model/vocab/a": 7), replaces files (files: {NAME: TEXT}) or
// removes them (remove: [NAME]). adapter: the same for adapter_config.json (config) and its files.
// In texts and arguments {dir} is the case's folder, {tiny} the tiny model, {data} tests/data.
#include "model/config.h"
#include "model/lora.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

namespace fs = std::filesystem;

namespace {

const std::string kTiny   = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny";
const std::string kData   = std::string(PAFT_SOURCE_DIR) + "/tests/data";
const std::string kCorpus = kData + "/bad_inputs";

struct CorpusCase {
    std::string file;  // the corpus file, for messages
    int         line = 0;
    std::string name;
    YAML::Node  node;
};

std::string expand(std::string text, const fs::path & dir) {
    const std::pair<std::string, std::string> subs[] = {{"{dir}", dir.string()}, {"{tiny}", kTiny}, {"{data}", kData}};
    for (const auto & [from, to] : subs) {
        for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
            text.replace(at, from.size(), to);
        }
    }
    return text;
}

// A YAML value as JSON: plain scalars that read as numbers, booleans or null become those; quoted
// scalars stay strings.
nlohmann::ordered_json to_json(const YAML::Node & node, const fs::path & dir) {
    if (node.IsMap()) {
        nlohmann::ordered_json j = nlohmann::ordered_json::object();
        for (const auto & kv : node) {
            j[kv.first.as<std::string>()] = to_json(kv.second, dir);
        }
        return j;
    }
    if (node.IsSequence()) {
        nlohmann::ordered_json j = nlohmann::ordered_json::array();
        for (const auto & item : node) {
            j.push_back(to_json(item, dir));
        }
        return j;
    }
    if (node.IsNull()) {
        return nullptr;
    }
    const std::string text = node.Scalar();
    if (node.Tag() != "!") {  // plain
        if (text == "true" || text == "false") {
            return text == "true";
        }
        try {
            size_t used = 0;
            if (text.find_first_of(".eEn") == std::string::npos) {
                const long long v = std::stoll(text, &used);
                if (used == text.size()) {
                    return v;
                }
            }
            const double v = std::stod(text, &used);
            if (used == text.size()) {
                return v;
            }
        } catch (const std::exception &) {
        }
    }
    return expand(text, dir);
}

void patch_keys(const fs::path & file, const YAML::Node & keys, const fs::path & dir) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(slurp(file));
    for (const auto & kv : keys) {
        const std::string key = kv.first.as<std::string>();
        if (kv.second.IsNull()) {
            j.erase(key);
        } else {
            j[key] = to_json(kv.second, dir);
        }
    }
    spit(file, j.dump(2));
}

void patch_pointers(const fs::path & file, const YAML::Node & pointers, const fs::path & dir) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(slurp(file));
    for (const auto & kv : pointers) {
        j[nlohmann::ordered_json::json_pointer(kv.first.as<std::string>())] = to_json(kv.second, dir);
    }
    spit(file, j.dump());
}

void write_files(const fs::path & folder, const YAML::Node & files, const fs::path & dir) {
    for (const auto & kv : files) {
        const fs::path path = folder / kv.first.as<std::string>();
        fs::create_directories(path.parent_path());
        spit(path, expand(kv.second.as<std::string>(), dir));
    }
}

void remove_files(const fs::path & folder, const YAML::Node & names) {
    for (const auto & name : names) {
        fs::remove(folder / name.as<std::string>());
    }
}

void make_model(const fs::path & dir, const YAML::Node & spec) {
    const fs::path m = dir / "m";
    fs::create_directories(m);
    for (const auto & e : fs::directory_iterator(kTiny)) {
        fs::copy_file(e.path(), m / e.path().filename());
    }
    if (spec["config"]) patch_keys(m / "config.json", spec["config"], dir);
    if (spec["tokenizer_config"]) patch_keys(m / "tokenizer_config.json", spec["tokenizer_config"], dir);
    if (spec["tokenizer"]) patch_pointers(m / "tokenizer.json", spec["tokenizer"], dir);
    if (spec["files"]) write_files(m, spec["files"], dir);
    if (spec["remove"]) remove_files(m, spec["remove"]);
}

// A rank-4 adapter of the tiny model on q_proj and v_proj, PEFT's initialisation (B = 0) with B
// then set to small values so that it changes the model.
void make_adapter(const fs::path & dir, const YAML::Node & spec) {
    const paft::ModelConfig model = paft::load_model_config(kTiny);
    paft::LoraConfig        lora;
    lora.r       = 4;
    lora.alpha   = 8.0f;
    lora.targets = paft::parse_lora_targets("q_proj,v_proj");
    paft::LoraAdapter adapter(model, lora);
    adapter.init_peft(7);
    for (float & v : adapter.params()) {
        if (v == 0.0f) v = 0.01f;
    }
    const fs::path a = dir / "adapter";
    adapter.save(a.string(), kTiny);
    if (spec["config"]) patch_keys(a / "adapter_config.json", spec["config"], dir);
    if (spec["files"]) write_files(a, spec["files"], dir);
    if (spec["remove"]) remove_files(a, spec["remove"]);
}

std::set<std::string> listing(const fs::path & dir) {
    std::set<std::string> names;
    for (const auto & e : fs::recursive_directory_iterator(dir)) {
        names.insert(fs::relative(e.path(), dir).string() + (e.is_directory() ? "/" : ""));
    }
    return names;
}

std::vector<CorpusCase> load_corpus() {
    std::vector<CorpusCase> cases;
    std::vector<fs::path>   files;
    for (const auto & e : fs::directory_iterator(kCorpus)) {
        if (e.path().extension() == ".yaml") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path & file : files) {
        const YAML::Node list = YAML::LoadFile(file.string());
        for (const auto & node : list) {
            cases.push_back({file.filename().string(), node.Mark().line + 1, node["name"].as<std::string>(), node});
        }
    }
    return cases;
}

const std::vector<CorpusCase> & corpus() {
    static const std::vector<CorpusCase> cases = load_corpus();
    return cases;
}

class BadInputCorpus : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInputCorpus, RefusedWithItsMessageAndNothingLeft) {
    const CorpusCase & c = corpus()[GetParam()];
    SCOPED_TRACE(c.file + ":" + std::to_string(c.line) + ": " + c.name);
    const fs::path dir = fresh_test_folder("paft-corpus");
    if (c.node["model"]) make_model(dir, c.node["model"]);
    if (c.node["adapter"]) make_adapter(dir, c.node["adapter"]);
    if (c.node["files"]) write_files(dir, c.node["files"], dir);
    std::vector<std::string> args;
    for (const auto & a : c.node["args"]) args.push_back(expand(a.as<std::string>(), dir));
    const std::set<std::string> before = listing(dir);
    const RunResult             r      = run_paft(args, dir);
    EXPECT_EQ(r.code, c.node["exit"].as<int>()) << describe(r);
    for (const auto & needle : c.node["message"]) {
        const std::string text = expand(needle.as<std::string>(), dir);
        EXPECT_NE(r.err.find(text), std::string::npos) << "the message lacks \"" << text << "\"\n" << describe(r);
    }
    EXPECT_EQ(listing(dir), before) << "files left behind or removed";
}

std::string case_label(const ::testing::TestParamInfo<size_t> & info) {
    const CorpusCase & c = corpus()[info.param];
    std::string        label = c.file.substr(0, c.file.size() - 5) + "_" + std::to_string(info.param);
    for (char & ch : label) {
        if (!std::isalnum((unsigned char) ch)) ch = '_';
    }
    return label;
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadInputCorpus, ::testing::Range<size_t>(0, corpus().size()), case_label);

// The corpus is as large as issue 18 asks, and every case says what it expects.
TEST(BadInputCorpusFiles, HoldAtLeast200WellFormedCases) {
    EXPECT_GE(corpus().size(), 200u);
    std::set<std::string> names;
    for (const CorpusCase & c : corpus()) {
        SCOPED_TRACE(c.file + ":" + std::to_string(c.line));
        EXPECT_TRUE(names.insert(c.name).second) << "two cases named " << c.name;
        EXPECT_TRUE(c.node["args"] && c.node["args"].IsSequence());
        EXPECT_TRUE(c.node["exit"] && c.node["message"] && c.node["message"].size() > 0);
        for (const auto & kv : c.node) {
            const std::string key = kv.first.as<std::string>();
            EXPECT_TRUE(key == "name" || key == "model" || key == "adapter" || key == "files" || key == "args" ||
                        key == "exit" || key == "message")
                << "unknown key " << key;
        }
    }
}

}  // namespace
