// The evaluator's tasks against lm-evaluation-harness's semantics at commit b281b09:
//  - an independent Python oracle (tools/reference/harness_ref.py: Python's random, str methods,
//    re, numpy, jinja2) evaluates the fixtures in tests/data/eval with a stand-in model whose
//    answers are a formula of the request's bytes; paft, given the same stand-in, must send the
//    same requests in the same order (one model call per task) and get the same per-document
//    metrics and aggregates to 1e-12;
//  - for one document of each task the exact context and continuations are written here by hand
//    from the harness's formats;
//  - helpers (GSM8K answers, HellaSwag cleaning, Python list literals, the regex filter, argmax,
//    mean and standard error), the results JSON and table, and bad input.
#include "core/error.h"
#include "eval/evaluator.h"
#include "eval/regex_filter.h"
#include "eval/results.h"
#include "eval/task_yaml.h"
#include "eval/tasks.h"
#include "io/fs.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace paft;
namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/harness_ref.py";
const std::string kData   = std::string(PAFT_SOURCE_DIR) + "/tests/data/eval";

// ---- the stand-in model (the same formula as harness_ref.py) -----------------------------------

uint32_t fnv1a(const std::string & bytes) {
    uint32_t h = 2166136261u;
    for (char c : bytes) {
        h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    }
    return h;
}

class StandInModel : public LanguageModel {
public:
    std::vector<std::vector<LoglikelihoodRequest>> ll_calls;
    std::vector<std::vector<GreedyRequest>>        greedy_calls;

    std::vector<Loglikelihood> loglikelihood(const std::vector<LoglikelihoodRequest> & requests) override {
        ll_calls.push_back(requests);
        std::vector<Loglikelihood> out;
        for (const auto & r : requests) {
            const uint32_t h = fnv1a(r.context + std::string(1, '\0') + r.continuation);
            out.push_back({-static_cast<double>(h % 61) / 8.0 - 0.25 * static_cast<double>(r.continuation.size()),
                           h % 4 == 0});
        }
        return out;
    }

    std::vector<std::string> greedy_until(const std::vector<GreedyRequest> & requests) override {
        greedy_calls.push_back(requests);
        static const char * const numbers[] = {"18", "1,234", "-3", "72", "5.5", "64"};
        std::vector<std::string>  out;
        for (const auto & r : requests) {
            const uint32_t    h = fnv1a(r.context);
            const std::string n = numbers[(h >> 8) % 6];
            const std::string forms[] = {" She has 2 apples.\n#### " + n, " The total is " + n + ".\n#### " + n,
                                         " Step: compute " + n + "\n#### " + n,
                                         " #### " + n + "\n\nQuestion: what next?", " I do not know."};
            std::string s = forms[h % 5];
            for (const std::string & term : r.until) {
                s = s.substr(0, s.find(term));
            }
            out.push_back(s);
        }
        return out;
    }
};

// ---- the oracle --------------------------------------------------------------------------------

struct OracleRun {
    std::string task;  // a task name, "mmlu", or "yaml:PATH"
    int         num_fewshot;
    json        limit;  // null or a count
};

const std::vector<OracleRun> & runs() {
    static const std::vector<OracleRun> r = {
        {"arc_challenge", 5, nullptr},
        {"arc_challenge", 0, nullptr},
        {"arc_easy", 3, 4},
        {"hellaswag", 10, nullptr},  // every training document, in sampled order
        {"hellaswag", 4, nullptr},
        {"mmlu", 5, nullptr},
        {"mmlu", 0, 2},
        {"truthfulqa_mc", 0, nullptr},
        {"winogrande", 5, nullptr},
        {"winogrande", 0, 1},  // one document: no standard error
        {"gsm8k", 3, nullptr},
        {"yaml:" + kData + "/custom/mc.yaml", 2, nullptr},
        {"yaml:" + kData + "/custom/gen.yaml", 1, nullptr},
        {"yaml:" + kData + "/custom/letters.yaml", 2, nullptr},
    };
    return r;
}

const json & oracle() {
    static const json out = [] {
        json spec = json::array();
        for (const OracleRun & r : runs()) {
            spec.push_back({{"task", r.task}, {"num_fewshot", r.num_fewshot}, {"limit", r.limit}});
        }
        const fs::path dir = fs::temp_directory_path() / ("paft-harness-ref-" + std::to_string(::getpid()));
        fs::create_directories(dir);
        write_file_atomic((dir / "runs.json").string(), spec.dump());
        const std::string cmd = fmt::format("/usr/bin/python3 '{}' --data '{}' --runs '{}' --out '{}'", kOracle, kData,
                                            (dir / "runs.json").string(), (dir / "out.json").string());
        const int rc = std::system(cmd.c_str());
        json      result;
        if (rc == 0) {
            result = json::parse(slurp(dir / "out.json"));
        }
        fs::remove_all(dir);
        return result;
    }();
    return out;
}

std::vector<TaskSpec> specs_for(const OracleRun & r) {
    if (r.task.rfind("yaml:", 0) == 0) {
        return {custom_task_spec(r.task.substr(5))};
    }
    return resolve_tasks({r.task}, kData);
}

void expect_close(const json & want, const MetricValue & got, const std::string & name) {
    ASSERT_TRUE(want.contains(name)) << name;
    EXPECT_NEAR(got.value, want[name].get<double>(), 1e-12) << name;
    const json & se = want[name + "_stderr"];
    if (se.is_null()) {
        EXPECT_FALSE(got.std_error.has_value()) << name;
    } else {
        ASSERT_TRUE(got.std_error.has_value()) << name;
        EXPECT_NEAR(*got.std_error, se.get<double>(), 1e-12) << name;
    }
}

// One task's requests, per-document metrics and aggregates against an oracle run entry.
void expect_task_matches(const json & want, const TaskResult & got, const std::vector<LoglikelihoodRequest> * ll,
                         const std::vector<GreedyRequest> * greedy) {
    SCOPED_TRACE(got.name);
    const json & want_ll = want["requests"];
    ASSERT_EQ(ll ? ll->size() : 0, want_ll.size());
    for (size_t i = 0; i < want_ll.size(); i++) {
        EXPECT_EQ((*ll)[i].context, want_ll[i][0].get<std::string>()) << "request " << i;
        EXPECT_EQ((*ll)[i].continuation, want_ll[i][1].get<std::string>()) << "request " << i;
    }
    const json & want_gen = want["greedy"];
    ASSERT_EQ(greedy ? greedy->size() : 0, want_gen.size());
    for (size_t i = 0; i < want_gen.size(); i++) {
        EXPECT_EQ((*greedy)[i].context, want_gen[i][0].get<std::string>()) << "greedy " << i;
        EXPECT_EQ(json((*greedy)[i].until), want_gen[i][1]) << "greedy " << i;
        EXPECT_EQ((*greedy)[i].max_gen_toks, want_gen[i][2].get<int>()) << "greedy " << i;
    }
    ASSERT_EQ(got.samples.size(), want["docs"].size());
    for (size_t d = 0; d < got.samples.size(); d++) {
        for (const auto & [name, v] : got.samples[d].metrics) {
            EXPECT_NEAR(v, want["docs"][d][name].get<double>(), 1e-12) << "doc " << d << " " << name;
        }
        EXPECT_EQ(got.samples[d].metrics.size(), want["docs"][d].size());
    }
    for (const MetricValue & m : got.metrics) {
        expect_close(want["results"], m, m.name);
    }
    EXPECT_EQ(got.metrics.size() * 2, want["results"].size());
}

// ---- small data folders written by the tests ---------------------------------------------------

void write_lines(const fs::path & path, const std::vector<json> & records) {
    fs::create_directories(path.parent_path());
    std::string text;
    for (const json & r : records) {
        text += r.dump() + "\n";
    }
    write_file_atomic(path.string(), text);
}

TaskResult run_one(StandInModel & lm, const std::vector<TaskSpec> & specs, int k) {
    EvalOptions o;
    o.num_fewshot = k;
    o.log_samples = true;
    EvalReport r  = evaluate(lm, specs, o);
    return r.tasks.at(0);
}

}  // namespace

// ---- against the oracle ------------------------------------------------------------------------

TEST(EvalTasks, MatchOracle) {
    const json & want = oracle();
    ASSERT_FALSE(want.is_null()) << "the oracle failed (it needs /usr/bin/python3 with numpy, jinja2 and yaml)";
    for (size_t i = 0; i < runs().size(); i++) {
        const OracleRun & r = runs()[i];
        SCOPED_TRACE(fmt::format("{} k={} limit={}", r.task, r.num_fewshot, r.limit.dump()));
        StandInModel lm;
        EvalOptions  o;
        o.num_fewshot = r.num_fewshot;
        o.log_samples = true;
        if (!r.limit.is_null()) {
            o.limit = r.limit.get<int64_t>();
        }
        const EvalReport report = evaluate(lm, specs_for(r), o);
        const json &     w      = want["runs"][i];
        if (r.task == "mmlu") {
            // One call per subject, then the mean over subjects.
            const json & subjects = w["subjects"];
            ASSERT_EQ(report.tasks.size(), subjects.size() + 1);
            ASSERT_EQ(lm.ll_calls.size(), subjects.size());
            for (size_t s = 0; s < subjects.size(); s++) {
                EXPECT_EQ(report.tasks[s].name, subjects[s]["task"].get<std::string>());
                expect_task_matches(subjects[s], report.tasks[s], &lm.ll_calls[s], nullptr);
            }
            const TaskResult & mmlu = report.tasks.back();
            EXPECT_EQ(mmlu.name, "mmlu");
            for (const MetricValue & m : mmlu.metrics) {
                expect_close(w["results"], m, m.name);
            }
            continue;
        }
        ASSERT_EQ(report.tasks.size(), 1u);
        EXPECT_LE(lm.ll_calls.size(), 1u);  // all of a task's requests in one call
        EXPECT_LE(lm.greedy_calls.size(), 1u);
        expect_task_matches(w, report.tasks[0], lm.ll_calls.empty() ? nullptr : &lm.ll_calls[0],
                            lm.greedy_calls.empty() ? nullptr : &lm.greedy_calls[0]);
    }
}

// The samples log carries each document's requests and the model's answers.
TEST(EvalTasks, SamplesHoldRequestsAndAnswers) {
    StandInModel     lm;
    const TaskResult r = run_one(lm, resolve_tasks({"winogrande"}, kData), 2);
    ASSERT_EQ(r.samples.size(), 7u);
    size_t at = 0;
    for (const DocSample & s : r.samples) {
        ASSERT_EQ(s.loglikelihood_requests.size(), 2u);
        EXPECT_EQ(s.loglikelihood_requests[0].context, lm.ll_calls[0][at].context);
        EXPECT_EQ(s.loglikelihoods.size(), 2u);
        EXPECT_NE(s.where.find("winogrande/validation.jsonl:"), std::string::npos);
        at += 2;
    }
    const fs::path dir = fresh_test_folder("paft-eval-samples");
    EvalReport     report;
    report.tasks.push_back(r);
    write_samples_jsonl((dir / "samples.jsonl").string(), report);
    const auto lines = json_lines(slurp(dir / "samples.jsonl"));
    ASSERT_EQ(lines.size(), 7u);
    EXPECT_EQ(lines[0]["task"], "winogrande");
    EXPECT_EQ(lines[0]["loglikelihood_requests"].size(), 2u);
    EXPECT_EQ(lines[0]["metrics"]["acc"], r.samples[0].metrics[0].second);
}

// ---- prompts written by hand from the harness's formats ----------------------------------------

class HandPrompts : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fresh_test_folder("paft-eval-hand");
        write_lines(dir_ / "arc_challenge/train.jsonl",
                    {{{"id", "a"}, {"question", "Which gas do plants take in?"},
                      {"choices", {{"text", {"oxygen", "carbon dioxide"}}, {"label", {"1", "2"}}}}, {"answerKey", "2"}}});
        write_lines(dir_ / "arc_challenge/test.jsonl",
                    {{{"id", "b"}, {"question", "What is ice?"},
                      {"choices", {{"text", {"frozen water", "steam", "café au lait"}}, {"label", {"A", "B", "C"}}}},
                      {"answerKey", "A"}}});
        write_lines(dir_ / "hellaswag/train.jsonl",
                    {{{"activity_label", "Home and Garden"},
                      {"ctx_a", "[header] How to clean a grill [title] Heat the grill."},
                      {"ctx_b", "tURN the burners ON."},
                      {"endings", {"[substeps] Wait  ten minutes.", "Leave."}},
                      {"label", "0"}}});
        write_lines(dir_ / "hellaswag/validation.jsonl",
                    {{{"activity_label", "Tennis"},
                      {"ctx_a", "Two players stand on a court."},
                      {"ctx_b", "ONE serves [the ball]"},
                      {"endings", {" and the other returns it.", " and goes home."}},
                      {"label", 1}}});
        // The validation split holds the evaluated question again (spaced differently: the same
        // document once processed), which the harness drops from the drawn examples.
        write_lines(dir_ / "mmlu/validation.jsonl",
                    {{{"question", " What is a joule? "}, {"subject", "high_school_physics"},
                      {"choices", {"N*m", "W", "Pa", "V"}}, {"answer", 0}},
                     {{"question", "What is a watt?"}, {"subject", "high_school_physics"},
                      {"choices", {"J/s", "N", "kg", "m"}}, {"answer", 0}}});
        write_lines(dir_ / "mmlu/test.jsonl",
                    {{{"question", "What is a joule?"}, {"subject", "high_school_physics"},
                      {"choices", {"N*m", "W", "Pa", "V"}}, {"answer", 0}}});
        write_lines(dir_ / "truthfulqa_mc/validation.jsonl",
                    {{{"question", "What is 2+2?"},
                      {"mc1_targets", {{"choices", {"4", "5"}}, {"labels", {1, 0}}}},
                      {"mc2_targets", {{"choices", {"4", "Four", "5"}}, {"labels", {1, 1, 0}}}}}});
        write_lines(dir_ / "winogrande/train.jsonl",
                    {{{"sentence", "The trophy doesn't fit in the case because the _ is too big."},
                      {"option1", "trophy"}, {"option2", "case"}, {"answer", "1"}}});
        write_lines(dir_ / "winogrande/validation.jsonl",
                    {{{"sentence", "Joan thanked Susan for the help _ had given."},
                      {"option1", "Joan"}, {"option2", "Susan"}, {"answer", "2"}}});
        write_lines(dir_ / "gsm8k/train.jsonl",
                    {{{"question", "Tom has 3 bags with 6 apples each. How many apples?"},
                      {"answer", "3 * 6 = <<3*6=18>>18\n#### 18"}}});
        write_lines(dir_ / "gsm8k/test.jsonl", {{{"question", "What is 1,000 + 234?"}, {"answer", "#### 1,234"}}});
    }

    std::vector<LoglikelihoodRequest> requests(const std::string & task, int k) {
        StandInModel lm;
        run_one(lm, resolve_tasks({task}, dir_.string()), k);
        return lm.ll_calls.at(0);
    }

    fs::path dir_;
};

TEST_F(HandPrompts, ArcChallenge) {
    const auto r = requests("arc_challenge", 1);
    ASSERT_EQ(r.size(), 3u);
    const std::string ctx = "Question: Which gas do plants take in?\nAnswer: carbon dioxide\n\nQuestion: What is ice?\nAnswer:";
    EXPECT_EQ(r[0].context, ctx);
    EXPECT_EQ(r[0].continuation, " frozen water");
    EXPECT_EQ(r[1].continuation, " steam");
    EXPECT_EQ(r[2].context, ctx);
    EXPECT_EQ(r[2].continuation, " café au lait");
}

TEST_F(HandPrompts, Hellaswag) {
    // ctx_b capitalised (the rest lowered), " [title]" -> ". ", "[...]" removed after the strip
    // (so "serves " keeps its space), double spaces collapsed; an ending's "[substeps]" leaves a
    // leading space, and the target adds another.
    const auto r = requests("hellaswag", 1);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].context,
              "Home and Garden: How to clean a grill. Heat the grill. Turn the burners on.  Wait ten minutes.\n\n"
              "Tennis: Two players stand on a court. One serves ");
    EXPECT_EQ(r[0].continuation, " and the other returns it.");
    EXPECT_EQ(r[1].continuation, " and goes home.");
}

TEST_F(HandPrompts, Mmlu) {
    const auto r = requests("hendrycksTest-high_school_physics", 1);
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0].context,
              "The following are multiple choice questions (with answers) about high school physics.\n\n"
              "What is a watt?\nA. J/s\nB. N\nC. kg\nD. m\nAnswer: A\n\n"
              "What is a joule?\nA. N*m\nB. W\nC. Pa\nD. V\nAnswer:");
    EXPECT_EQ(r[0].continuation, " A");
    EXPECT_EQ(r[3].continuation, " D");
    const auto zero = requests("hendrycksTest-high_school_physics", 0);
    EXPECT_EQ(zero[1].context,
              "The following are multiple choice questions (with answers) about high school physics.\n\n"
              "What is a joule?\nA. N*m\nB. W\nC. Pa\nD. V\nAnswer:");
    EXPECT_EQ(zero[1].continuation, " B");
}

TEST_F(HandPrompts, TruthfulQa) {
    const auto r = requests("truthfulqa_mc", 0);
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0].context,
              "Q: What is human life expectancy in the United States?\n"
              "A: Human life expectancy in the United States is 78 years.\n\n"
              "Q: Who was president of the United States in 1955?\n"
              "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
              "Q: Which party did he belong to?\n"
              "A: He belonged to the Republican Party.\n\n"
              "Q: What is the square root of banana?\n"
              "A: I have no comment.\n\n"
              "Q: How does a telescope work?\n"
              "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
              "Q: Where were the 1992 Olympics held?\n"
              "A: The 1992 Olympics were held in Barcelona, Spain.\n\n"
              "Q: What is 2+2?\nA:");
    const std::vector<std::string> continuations = {" 4", " 5", " 4", " Four", " 5"};  // mc1, then mc2
    for (size_t i = 0; i < r.size(); i++) {
        EXPECT_EQ(r[i].continuation, continuations[i]);
        EXPECT_EQ(r[i].context, r[0].context);
    }
}

TEST_F(HandPrompts, Winogrande) {
    // The example is the sentence with the right option filled in; the document's own text (the
    // last "\n\n" chunk) is replaced by each option's partial sentence.
    const auto r = requests("winogrande", 1);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].context, "The trophy doesn't fit in the case because the trophy is too big.\n\n"
                            "Joan thanked Susan for the help Joan");
    EXPECT_EQ(r[1].context, "The trophy doesn't fit in the case because the trophy is too big.\n\n"
                            "Joan thanked Susan for the help Susan");
    EXPECT_EQ(r[0].continuation, " had given.");
    EXPECT_EQ(r[1].continuation, " had given.");
}

TEST_F(HandPrompts, Gsm8k) {
    StandInModel lm;
    run_one(lm, resolve_tasks({"gsm8k"}, dir_.string()), 1);
    ASSERT_EQ(lm.greedy_calls.at(0).size(), 1u);
    const GreedyRequest & g = lm.greedy_calls[0][0];
    EXPECT_EQ(g.context, "Question: Tom has 3 bags with 6 apples each. How many apples?\nAnswer: 3 * 6 = <<3*6=18>>18\n"
                         "#### 18\n\nQuestion: What is 1,000 + 234?\nAnswer:");
    EXPECT_EQ(g.until, (std::vector<std::string>{":", "Question:", "Question"}));
    EXPECT_EQ(g.max_gen_toks, 256);
}

TEST(EvalTasks, CustomGenerationPrompt) {
    // first_n from the evaluated file: the first two documents, the evaluated one dropped.
    StandInModel lm;
    run_one(lm, {custom_task_spec(kData + "/custom/gen.yaml")}, 1);
    bool found = false;
    for (const GreedyRequest & g : lm.greedy_calls.at(0)) {
        if (g.context.find("Problem: What is 9 * 2?\nSolution:") != std::string::npos &&
            g.context.rfind("Problem: What is 9 * 2?") == g.context.size() - 33) {
            EXPECT_EQ(g.context, "Problem: What is 1,000 + 234?\nSolution: 1234\n\nProblem: What is 9 * 2?\nSolution:");
            found = true;
        } else {
            EXPECT_EQ(g.context.rfind("Problem: What is 9 * 2?\nSolution: 18\n\nProblem: ", 0), 0u) << g.context;
        }
        EXPECT_EQ(g.until, (std::vector<std::string>{"\n\n", "Problem:"}));
        EXPECT_EQ(g.max_gen_toks, 64);
    }
    EXPECT_TRUE(found);
}

TEST(EvalTasks, CustomChoicePrompt) {
    // Description rendered per document, choices from "{{choices}}" (a Python list's text),
    // target "{{label}}" read as an index.
    const fs::path dir = fresh_test_folder("paft-eval-yaml");
    write_lines(dir / "data/test.jsonl", {{{"question", "Is it 'quoted'?"}, {"choices", {"it's \"so\"", "no"}},
                                           {"label", 0}, {"topic", "quotes"}}});
    write_file_atomic((dir / "t.yaml").string(),
                      "task: quotes\ndataset_path: data\ntest_split: test\noutput_type: multiple_choice\n"
                      "description: \"About {{topic}}:\\n\"\ndoc_to_text: \"Q: {{question}}\\nA:\"\n"
                      "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{label}}\"\n");
    StandInModel lm;
    const TaskResult r = run_one(lm, {custom_task_spec((dir / "t.yaml").string())}, 0);
    ASSERT_EQ(lm.ll_calls.at(0).size(), 2u);
    EXPECT_EQ(lm.ll_calls[0][0].context, "About quotes:\nQ: Is it 'quoted'?\nA:");
    EXPECT_EQ(lm.ll_calls[0][0].continuation, " it's \"so\"");
    EXPECT_EQ(lm.ll_calls[0][1].continuation, " no");
    EXPECT_EQ(r.version, 0);
}

TEST(EvalTasks, ResolvesNamesAndAliases) {
    const auto lb = resolve_tasks({"leaderboard"}, kData);
    std::vector<std::string> names;
    std::vector<int>         shots;
    for (const TaskSpec & s : lb) {
        names.push_back(s.name);
        shots.push_back(s.default_num_fewshot);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"arc_challenge", "hellaswag", "hendrycksTest-abstract_algebra",
                                               "hendrycksTest-college_biology", "hendrycksTest-world_religions",
                                               "truthfulqa_mc", "winogrande", "gsm8k"}));
    EXPECT_EQ(shots, (std::vector<int>{25, 10, 5, 5, 5, 0, 5, 5}));
    // Repeats run once.
    EXPECT_EQ(resolve_tasks({"gsm8k", "hendrycksTest-world_religions", "mmlu", "gsm8k"}, kData).size(), 4u);
}

// ---- helpers -----------------------------------------------------------------------------------

TEST(EvalTasks, Gsm8kAnswers) {
    EXPECT_EQ(gsm8k_answer("so 5 + 3 = 8\n#### 8"), "8");
    EXPECT_EQ(gsm8k_answer("#### 1,234 apples"), "1234");
    EXPECT_EQ(gsm8k_answer("#### -3."), "-3.");
    EXPECT_EQ(gsm8k_answer("#### - 3\n#### 7"), "7");  // the first "#### " followed by a number
    EXPECT_EQ(gsm8k_answer("##### 12"), "12");
    EXPECT_EQ(gsm8k_answer("####12"), "[invalid]");
    EXPECT_EQ(gsm8k_answer("#### -"), "[invalid]");
    EXPECT_EQ(gsm8k_answer("no answer"), "[invalid]");
}

TEST(EvalTasks, HellaswagCleaning) {
    EXPECT_EQ(hellaswag_preprocess("  a [title] b  "), "a. b");
    EXPECT_EQ(hellaswag_preprocess("x [step] y [substeps]z"), "x y z");
    EXPECT_EQ(hellaswag_preprocess("keep [this\nline] open"), "keep [this\nline] open");  // '.' stops at '\n'
    EXPECT_EQ(hellaswag_preprocess("a [b [c] d] e"), "a d] e");  // lazy: from the first '[' to the first ']'
    EXPECT_EQ(hellaswag_preprocess("a   b"), "a  b");  // one pass of "  " -> " "
}

TEST(EvalTasks, PythonListLiterals) {
    EXPECT_EQ(parse_python_list("['a', \"it's\", 'x\\'y', '\\u00e9\\n']", "w"),
              (std::vector<std::string>{"a", "it's", "x'y", "é\n"}));
    EXPECT_EQ(parse_python_list("(1, 2.5, -3)", "w"), (std::vector<std::string>{"1", "2.5", "-3"}));
    EXPECT_EQ(parse_python_list("[]", "w"), std::vector<std::string>{});
    expect_input_error([] { parse_python_list("yes, no", "FILE:3: doc_to_choice"); }, {"FILE:3: doc_to_choice", "list"});
    expect_input_error([] { parse_python_list("['a' 'b']", "w"); }, {"expected ','"});
}

TEST(EvalTasks, RegexFilter) {
    const RegexFilter one("#### (\\-?[0-9\\.\\,]+)", 0, "[invalid]", "t");
    EXPECT_EQ(one.apply("x #### 1,2 y #### 3"), "1,2");
    EXPECT_EQ(one.apply("nothing"), "[invalid]");
    const RegexFilter last("(\\d+)", -1, "none", "t");
    EXPECT_EQ(last.apply("1 and 22 and 333"), "333");
    const RegexFilter groups("(a)|(b)", 0, "none", "t");  // a tuple: its first non-empty group
    EXPECT_EQ(groups.apply("b a"), "b");
    const RegexFilter whole("\\s*\\w+\\s*", 1, "none", "t");  // no group: the match, stripped
    EXPECT_EQ(whole.apply(" one  two "), "two");
    expect_input_error([] { RegexFilter("(", 0, "", "FILE:4"); }, {"FILE:4", "bad regex"});
}

TEST(EvalTasks, ArgmaxAndAggregation) {
    EXPECT_EQ(argmax({1.0, 3.0, 3.0}), 1u);  // the first maximum
    EXPECT_EQ(argmax({1.0, NAN, 5.0, NAN}), 1u);  // numpy: the first NaN
    const MetricValue m = mean_with_stderr("acc", {1, 0, 1, 1});
    EXPECT_DOUBLE_EQ(m.value, 0.75);
    // sample std: sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5; / sqrt(4)
    ASSERT_TRUE(m.std_error.has_value());
    EXPECT_DOUBLE_EQ(*m.std_error, 0.25);
    EXPECT_FALSE(mean_with_stderr("acc", {1}).std_error.has_value());
}

// ---- results -----------------------------------------------------------------------------------

EvalReport hand_report() {
    EvalReport r;
    TaskResult arc;
    arc.name    = "arc_challenge";
    arc.version = 0;
    arc.metrics = {{"acc", 0.25, 0.0435}, {"acc_norm", 0.28, 0.04489}};
    TaskResult gsm;
    gsm.name    = "gsm8k";
    gsm.version = 0;
    gsm.metrics = {{"acc", 1.0, std::nullopt}};
    r.tasks     = {arc, gsm};
    r.config    = {{"num_fewshot", 25}};
    return r;
}

TEST(EvalTasks, ResultsTable) {
    EXPECT_EQ(results_table(hand_report()),
              "|    Task     |Version| Metric |Value |   |Stderr|\n"
              "|-------------|------:|--------|-----:|---|-----:|\n"
              "|arc_challenge|      0|acc     |0.2500|±  |0.0435|\n"
              "|             |       |acc_norm|0.2800|±  |0.0449|\n"
              "|gsm8k        |      0|acc     |1.0000|   |      |\n");
}

TEST(EvalTasks, ResultsJson) {
    const fs::path dir = fresh_test_folder("paft-eval-results");
    write_results_json((dir / "results.json").string(), hand_report());
    const json j = json::parse(slurp(dir / "results.json"));
    EXPECT_EQ(j["results"]["arc_challenge"]["acc"], 0.25);
    EXPECT_EQ(j["results"]["arc_challenge"]["acc_norm_stderr"], 0.04489);
    EXPECT_TRUE(j["results"]["gsm8k"]["acc_stderr"].is_null());
    EXPECT_EQ(j["versions"]["gsm8k"], 0);
    EXPECT_EQ(j["config"]["num_fewshot"], 25);
    // Keys in the harness's order: each metric, then its standard error.
    std::vector<std::string>     keys;
    const nlohmann::ordered_json o = nlohmann::ordered_json::parse(slurp(dir / "results.json"));
    for (const auto & [k, v] : o["results"]["arc_challenge"].items()) {
        keys.push_back(k);
    }
    EXPECT_EQ(keys, (std::vector<std::string>{"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);  // no temporary left
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(EvalTasks, BadInput) {
    const fs::path dir = fresh_test_folder("paft-eval-bad");
    StandInModel   lm;
    auto           run = [&](const std::vector<TaskSpec> & specs, int k) {
        EvalOptions o;
        o.num_fewshot = k;
        evaluate(lm, specs, o);
    };
    // A missing split, named with its folder.
    write_lines(dir / "arc_challenge/test.jsonl", {{{"question", "q"}, {"choices", {{"text", {"a", "b"}}}}, {"answerKey", "A"}}});
    expect_input_error([&] { run(resolve_tasks({"arc_challenge"}, dir.string()), 1); },
                       {(dir / "arc_challenge").string(), "no train split", "train.jsonl"});
    // Zero-shot needs no training file.
    run(resolve_tasks({"arc_challenge"}, dir.string()), 0);
    // More examples than the split holds.
    write_lines(dir / "arc_challenge/train.jsonl", {{{"question", "q"}, {"choices", {{"text", {"a", "b"}}}}, {"answerKey", "B"}}});
    expect_input_error([&] { run(resolve_tasks({"arc_challenge"}, dir.string()), 2); }, {"arc_challenge", "2 few-shot"});
    // A missing field, and a mistyped one, named with FILE:LINE.
    write_lines(dir / "hellaswag/validation.jsonl",
                {{{"activity_label", "a"}, {"ctx_a", "b"}, {"ctx_b", "c"}, {"endings", {"x", "y"}}, {"label", "0"}},
                 {{"activity_label", "a"}, {"ctx_a", "b"}, {"endings", {"x", "y"}}, {"label", "1"}}});
    expect_input_error([&] { run(resolve_tasks({"hellaswag"}, dir.string()), 0); },
                       {"hellaswag/validation.jsonl:2", "field 'ctx_b' is missing"});
    write_lines(dir / "winogrande/validation.jsonl", {{{"sentence", "a _ b"}, {"option1", "x"}, {"option2", "y"}, {"answer", 1}}});
    expect_input_error([&] { run(resolve_tasks({"winogrande"}, dir.string()), 0); },
                       {"winogrande/validation.jsonl:1", "field 'answer' must be a string"});
    write_lines(dir / "gsm8k/test.jsonl", {{{"question", "q"}, {"answer", "42"}}});
    expect_input_error([&] { run(resolve_tasks({"gsm8k"}, dir.string()), 0); }, {"gsm8k/test.jsonl:1", "#### N"});
    // TruthfulQA is zero-shot only.
    expect_input_error([&] { run(resolve_tasks({"truthfulqa_mc"}, kData), 1); }, {"truthfulqa_mc", "zero-shot only"});
    // Unknown names, with suggestions.
    expect_input_error([] { resolve_tasks({"hellaswg"}, kData); }, {"unknown task 'hellaswg'", "did you mean 'hellaswag'"});
    expect_input_error([] { resolve_tasks({"hendrycksTest-world_religion"}, kData); },
                       {"unknown MMLU subject 'world_religion'", "hendrycksTest-world_religions"});
}

TEST(EvalTasks, BadYaml) {
    const fs::path dir = fresh_test_folder("paft-eval-bad-yaml");
    write_lines(dir / "data/test.jsonl", {{{"question", "q"}, {"answer", "a"}}});
    auto yaml = [&](const std::string & name, const std::string & text) {
        write_file_atomic((dir / name).string(), text);
        return (dir / name).string();
    };
    const std::string unknown = yaml("unknown.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                     "doc_to_txt: \"{{question}}\"\ndoc_to_target: answer\n");
    expect_input_error([&] { custom_task_spec(unknown); },
                       {unknown + ":4", "unknown key 'doc_to_txt'", "did you mean 'doc_to_text'"});
    const std::string nested = yaml("nested.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                   "doc_to_text: q\ndoc_to_target: answer\n"
                                                   "generation_kwargs:\n  until: [x]\n  max_new_toks: 5\n");
    expect_input_error([&] { custom_task_spec(nested); }, {nested + ":8", "'max_new_toks'", "did you mean 'max_gen_toks'"});
    const std::string missing = yaml("missing.yaml", "task: t\ndataset_path: data\ntest_split: validation\n"
                                                     "doc_to_text: q\ndoc_to_target: answer\n");
    expect_input_error([&] { load_custom_task(custom_task_spec(missing), 0); }, {missing, "no validation split"});
    const std::string undefined = yaml("undefined.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                         "doc_to_text: \"Q: {{questio}}\"\ndoc_to_target: answer\n");
    expect_input_error([&] { load_custom_task(custom_task_spec(undefined), 0); },
                       {"data/test.jsonl:1", "doc_to_text", "questio"});
    const std::string syntax = yaml("syntax.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                   "doc_to_text: \"{{ question \"\ndoc_to_target: answer\n");
    expect_input_error([&] { custom_task_spec(syntax); }, {syntax + ":4", "doc_to_text"});
    const std::string sampling = yaml("sampling.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                       "doc_to_text: q\ndoc_to_target: answer\n"
                                                       "generation_kwargs:\n  do_sample: true\n");
    expect_input_error([&] { custom_task_spec(sampling); }, {sampling + ":7", "greedy"});
    const std::string choices = yaml("choices.yaml", "task: t\ndataset_path: data\ntest_split: test\n"
                                                     "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_target: answer\n"
                                                     "doc_to_choice: [b, c]\n");
    expect_input_error([&] { load_custom_task(custom_task_spec(choices), 0); }, {"data/test.jsonl:1", "none of the choices"});
}
