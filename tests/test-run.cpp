// paft run: the report's table against hand-computed values, the stage records (reuse, rerun,
// continuation), recipe errors, and a reduced recipe end to end: a small synthetic world, a base
// model pre-trained for a few steps, every stage, every row and column of the report, no NaN, and a
// second run that reuses every stage.
#include "cli_util.h"
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "run/report.h"
#include "run/run_recipe.h"
#include "run/stages.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using namespace paft;

namespace {

const fs::path kSource = PAFT_SOURCE_DIR;

RowResult row(const std::string & id, const std::string & group, const std::string & label, ordered_json scores) {
    RowResult r;
    r.row    = ComparisonRow{id, group, label, "m", {}};
    r.scores = std::move(scores);
    return r;
}

}  // namespace

TEST(RunReport, PrimaryMetricIsTheLeaderboardsOrTheFirst) {
    EXPECT_EQ(primary_metric("arc_challenge", {{"acc", 0.1}, {"acc_stderr", 0.0}, {"acc_norm", 0.2}}), "acc_norm");
    EXPECT_EQ(primary_metric("truthfulqa_mc", {{"mc1", 0.1}, {"mc2", 0.2}}), "mc2");
    EXPECT_EQ(primary_metric("world_sums", {{"exact_match", 0.5}, {"exact_match_stderr", 0.1}}), "exact_match");
    EXPECT_EQ(primary_metric("custom", {{"acc_norm", 0.5}, {"acc", 0.1}}), "acc_norm");
}

TEST(RunReport, TableHasGroupsAveragesAndMissingCells) {
    std::vector<RowResult> rows = {
        row("paft-ties", "PAFT", "TIES", {{"arc_challenge", {{"acc", 0.5}, {"acc_norm", 0.25}}}, {"t2", {{"exact_match", 0.75}}}}),
        row("sft", "Individual", "SFT-alone", {{"arc_challenge", {{"acc", 0.5}, {"acc_norm", 0.5}}}}),
        row("base", "Base", "tiny", {{"arc_challenge", {{"acc_norm", 0.125}}}, {"t2", {{"exact_match", 0.0}}}}),
    };
    rows[0].win_rate = WinRate{0.625, 0.1, 8, 4, 2};
    const std::vector<std::string> tasks = comparison_tasks(rows);
    ASSERT_EQ(tasks, (std::vector<std::string>{"arc_challenge", "t2"}));
    const std::string table = comparison_table(rows, tasks);
    // By hand: TIES (0.25 + 0.75) / 2 = 0.5; SFT has no t2 score, so no average; base 0.0625.
    EXPECT_NE(table.find("| Method | arc_challenge | t2 | Average | Win rate |"), std::string::npos) << table;
    EXPECT_NE(table.find("| **PAFT** |"), std::string::npos) << table;
    EXPECT_NE(table.find("| TIES | 0.2500 | 0.7500 | 0.5000 | 0.6250 |"), std::string::npos) << table;
    EXPECT_NE(table.find("| SFT-alone | 0.5000 | — | — | — |"), std::string::npos) << table;
    EXPECT_NE(table.find("| tiny | 0.1250 | 0.0000 | 0.0625 | — |"), std::string::npos) << table;
    EXPECT_EQ(table.find("**Base**"), std::string::npos) << table;
}

TEST(RunReport, MmluSubjectsGiveWayToTheirMean) {
    std::vector<RowResult> rows = {row("base", "Base", "b",
                                       {{"hendrycksTest-anatomy", {{"acc", 0.5}}},
                                        {"hendrycksTest-virology", {{"acc", 0.25}}},
                                        {"mmlu", {{"acc", 0.375}}}})};
    EXPECT_EQ(comparison_tasks(rows), (std::vector<std::string>{"mmlu"}));
}

TEST(RunStages, ReusedWhenDoneRerunWhenChangedContinuedWhenCut) {
    const fs::path dir   = fresh_test_folder("run-stages");
    const fs::path out   = dir / "out";
    int            calls = 0;
    auto           work  = [&](StageRecord & r) {
        calls++;
        fs::create_directories(out);
        spit(out / "file", "x");
        r.info["n"] = calls;
    };
    {
        StageRunner s((dir / "stages").string(), 1);
        StageRecord r = s.run("a/b", {{"k", 1}}, {out.string()}, work);
        EXPECT_FALSE(r.reused);
        EXPECT_EQ(r.status, "done");
    }
    {
        StageRunner s((dir / "stages").string(), 1);
        StageRecord r = s.run("a/b", {{"k", 1}}, {out.string()}, work);
        EXPECT_TRUE(r.reused);
        EXPECT_EQ(r.info["n"], 1);
        EXPECT_EQ(calls, 1);
    }
    {
        // Other settings: the old outputs go before the stage runs again.
        StageRunner s((dir / "stages").string(), 1);
        spit(dir / "marker-before", "");
        bool saw_old = true;
        s.run("a/b", {{"k", 2}}, {out.string()}, [&](StageRecord & r) {
            saw_old = fs::exists(out / "file");
            work(r);
        });
        EXPECT_FALSE(saw_old);
        EXPECT_EQ(calls, 2);
    }
    {
        // A stage cut short (status running, same settings) keeps its outputs and runs again.
        const std::string record = slurp(dir / "stages" / "a.b.json");
        ordered_json      j      = ordered_json::parse(record);
        j["status"]              = "running";
        spit(dir / "stages" / "a.b.json", j.dump());
        StageRunner s((dir / "stages").string(), 1);
        bool        kept = false;
        s.run("a/b", {{"k", 2}}, {out.string()}, [&](StageRecord & r) {
            kept = fs::exists(out / "file");
            work(r);
        });
        EXPECT_TRUE(kept);
        EXPECT_EQ(calls, 3);
    }
}

TEST(RunRecipe, ErrorsNameTheLineAndKey) {
    const fs::path dir = fresh_test_folder("run-recipe");
    auto expect_error  = [&](const std::string & yaml, const std::vector<std::string> & needles) {
        spit(dir / "r.yaml", yaml);
        try {
            read_run_recipe((dir / "r.yaml").string());
            ADD_FAILURE() << "no error for:\n" << yaml;
        } catch (const InputError & e) {
            for (const std::string & n : needles) {
                EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
            }
        }
    };
    const std::string ok = "output_dir: o\nmodel_name_or_path: m\nsft:\n  train_data: s.jsonl\n  l1_lambda: 0.001\n"
                           "preference:\n  train_data: p.jsonl\n";
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\n  limt: 3\n", {"r.yaml:10", "evaluation.limt", "limit"});
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\nmerge:\n  method: ties\n", {"r.yaml:10", "merges"});
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\nmerges:\n  - method: ties\n    t: 0.5\n", {"r.yaml"});
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\nmerges:\n  - method: ties\n  - method: ties\n",
                 {"r.yaml:12", "twice"});
    expect_error(ok, {"evaluation", "tasks"});
    expect_error("output_dir: o\nmodel_name_or_path: m\nsft:\n  train_data: s.jsonl\npreference:\n  train_data: "
                 "p.jsonl\nevaluation:\n  tasks: [a.yaml]\n",
                 {"l1_lambda"});
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\nsynth:\n  peeple: 3\n", {"r.yaml:11", "synth.peeple"});
    expect_error(ok + "evaluation:\n  tasks: [a.yaml]\n  batch: 0\n", {"r.yaml:10", "evaluation.batch"});

    spit(dir / "r.yaml", ok + "evaluation:\n  tasks: arc_challenge,gsm8k\n  data_dir: d\n");
    const RunRecipe r = read_run_recipe((dir / "r.yaml").string());
    EXPECT_EQ(r.evaluation.tasks, (std::vector<std::string>{"arc_challenge", "gsm8k"}));
    ASSERT_EQ(r.merges.size(), 5u);  // the paper's five by default
    EXPECT_EQ(r.merges[0].method, "slerp");
    EXPECT_EQ(r.merges[4].method, "linear");
}

// The reduced recipe end to end (a few minutes on two cores).
TEST(RunEndToEnd, EveryStageRowAndColumnThenEverythingReused) {
    const fs::path dir   = fresh_test_folder("run-e2e");
    const fs::path world = dir / "world";
    RunResult      r     = run_paft({"synth", "--out", world.string(), "--seed", "3", "--people", "12",
                                     "--heldout-people", "4", "--corpus-docs", "300", "--sft-examples", "48",
                                     "--pref-examples", "48", "--judge-prompts", "6", "--vocab-size", "300"},
                                    dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    r = run_paft({"pretrain", "--data", (world / "corpus.jsonl").string(), "--tokenizer",
                  (world / "tokenizer").string(), "--out", (dir / "base").string(), "--preset", "paft-tiny",
                  "--seq-len", "64", "--batch-size", "8", "--max-steps", "4", "--threads", "2"},
                 dir);
    ASSERT_EQ(r.code, 0) << describe(r);

    const std::string recipe = "output_dir: " + (dir / "run").string() + "\n" +
                               "model_name_or_path: " + (dir / "base").string() + "\n" +
                               "threads: 2\nseed: 1\nlora_r: 4\nlora_alpha: 8\nmax_steps: 3\n"
                               "per_device_train_batch_size: 4\nlogging_steps: 1\nsave_steps: 0\n"
                               "sft:\n  train_data: " + (world / "sft.jsonl").string() + "\n  learning_rate: 1.0e-3\n"
                               "  l1_lambda: 1.0e-3\n"
                               "preference:\n  method: dpo\n  train_data: " + (world / "prefs.jsonl").string() +
                               "\n  learning_rate: 1.0e-3\n"
                               "merges:\n  - {method: slerp, t: 0.5}\n  - {method: ties, densities: [0.5, 0.5]}\n"
                               "evaluation:\n  tasks: [" + (world / "tasks/world_facts.yaml").string() + ", " +
                               (world / "tasks/world_sums.yaml").string() + "]\n  limit: 4\n  winrate: " +
                               (world / "judge.jsonl").string() + "\n  max_new_tokens: 8\n"
                               "export:\n  types: [q8_0]\n  rows: [paft-ties, dpo]\n";
    spit(dir / "recipe.yaml", recipe);
    r = run_paft({"run", (dir / "recipe.yaml").string()}, dir);
    ASSERT_EQ(r.code, 0) << describe(r);

    const fs::path run = dir / "run";
    for (const char * f : {"report.md", "results.json", "sparsity.svg", "sparsity.json", "curves.svg", "recipe.yaml"}) {
        EXPECT_TRUE(fs::exists(run / f)) << f;
    }
    for (const char * a : {"adapters/sft", "adapters/sft-sparse", "adapters/dpo", "sequential/sft-dpo/dpo",
                           "sequential/sft-sparse-dpo/dpo"}) {
        EXPECT_TRUE(fs::exists(run / a / "adapter_model.safetensors")) << a;
        EXPECT_TRUE(fs::exists(run / a / "metrics.jsonl")) << a;
    }
    for (const char * m : {"merged/paft-slerp", "merged/paft-ties", "merged/parallel-slerp", "merged/parallel-ties",
                           "sequential/sft-dpo/model", "sequential/sft-sparse-dpo/model",
                           "sequential/sft-dpo/sft-model"}) {
        EXPECT_TRUE(fs::exists(run / m / "config.json")) << m;
        EXPECT_TRUE(fs::exists(run / m / "tokenizer.json")) << m;
    }

    // The GGUF files of the export: section: the merged model, and the base with the DPO adapter folded in.
    for (const char * id : {"paft-ties", "dpo"}) {
        const fs::path file = run / "gguf" / (std::string(id) + "-q8_0.gguf");
        ASSERT_TRUE(fs::exists(file)) << file;
        const GgufFile gguf(file.string());
        EXPECT_EQ(gguf.at("general.name").as_string(), id);
        EXPECT_EQ(gguf.at("general.file_type").as_int(), 7);  // llama.cpp's MOSTLY_Q8_0
        EXPECT_EQ(gguf.at("tokenizer.ggml.model").as_string(), "gpt2");
    }

    // 3 trainings + 4 merges + 2 sequential + 10 evaluations + 2 exports, every one done.
    const ordered_json results = ordered_json::parse(slurp(run / "results.json"));
    ASSERT_EQ(results["stages"].size(), 21u);
    for (const auto & s : results["stages"]) {
        EXPECT_EQ(s["status"], "done") << s.dump();
        EXPECT_FALSE(s["reused"].get<bool>()) << s.dump();
        EXPECT_GT(s["peak_memory_bytes"].get<uint64_t>(), 0u) << s.dump();
    }
    const std::vector<std::string> ids = {"paft-slerp", "paft-ties", "parallel-slerp", "parallel-ties",
                                          "sequential-sft-sparse", "sequential-sft", "sft-sparse", "sft", "dpo", "base"};
    ASSERT_EQ(results["rows"].size(), ids.size());
    for (size_t i = 0; i < ids.size(); i++) {
        const ordered_json & row = results["rows"][i];
        EXPECT_EQ(row["id"], ids[i]);
        for (const char * task : {"world_facts", "world_sums"}) {
            ASSERT_TRUE(row["scores"].contains(task)) << row.dump();
            ASSERT_TRUE(row["scores"][task].is_number()) << row.dump();
            const double v = row["scores"][task];
            EXPECT_TRUE(v >= 0 && v <= 1) << row.dump();
        }
        ASSERT_TRUE(row["average"].is_number()) << row.dump();
        ASSERT_TRUE(row.contains("win_rate")) << row.dump();
        EXPECT_EQ(row["win_rate"]["cases"], 6);
        const double w = row["win_rate"]["win_rate"];
        EXPECT_TRUE(w >= 0 && w <= 1) << row.dump();
    }
    const std::string report = slurp(run / "report.md");
    for (const char * needle : {"| Method | world_facts | world_sums | Average | Win rate |", "| SLERP |", "| TIES |",
                                "| **PAFT (SFT_sparse + DPO)** |", "| **Parallel SFT + DPO** |", "| **Sequential** |",
                                "| SFT_sparse + DPO |", "| SFT + DPO |", "| SFT_sparse-alone |", "| SFT-alone |",
                                "| DPO-alone |", "| base |", "sparsity.svg", "curves.svg", "| train/sft-sparse |"}) {
        EXPECT_NE(report.find(needle), std::string::npos) << needle << "\n" << report;
    }
    EXPECT_EQ(report.find("nan"), std::string::npos) << report;
    EXPECT_NE(r.out.find("| Method |"), std::string::npos) << r.out;  // the table on stdout

    // Again: every stage is reused and the numbers are the same.
    r = run_paft({"run", (dir / "recipe.yaml").string()}, dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    const ordered_json again = ordered_json::parse(slurp(run / "results.json"));
    for (const auto & s : again["stages"]) {
        EXPECT_TRUE(s["reused"].get<bool>()) << s.dump();
    }
    EXPECT_EQ(again["rows"], results["rows"]);

    // A stage cut short (its record still "running", its final adapter not written yet) runs
    // again over what it left: the preference trainer resumes from its last checkpoint and writes
    // the same adapter, so nothing downstream changes.
    {
        ordered_json record = ordered_json::parse(slurp(run / "stages" / "train.dpo.json"));
        record["status"]    = "running";
        spit(run / "stages" / "train.dpo.json", record.dump());
        const std::string adapter = slurp(run / "adapters/dpo/adapter_model.safetensors");
        fs::remove(run / "adapters/dpo/adapter_model.safetensors");
        r = run_paft({"run", (dir / "recipe.yaml").string()}, dir);
        ASSERT_EQ(r.code, 0) << describe(r);
        const ordered_json resumed = ordered_json::parse(slurp(run / "results.json"));
        for (const auto & s : resumed["stages"]) {
            EXPECT_EQ(s["reused"].get<bool>(), s["stage"] != "train/dpo") << s.dump();
        }
        EXPECT_EQ(resumed["rows"], results["rows"]);
        EXPECT_EQ(slurp(run / "adapters/dpo/adapter_model.safetensors"), adapter);
    }

    // A new merge setting reruns only what depends on it.
    spit(dir / "recipe.yaml", [&] {
        std::string changed = recipe;
        changed.replace(changed.find("densities: [0.5, 0.5]"), 21, "densities: [0.7, 0.7]");
        return changed;
    }());
    r = run_paft({"run", (dir / "recipe.yaml").string()}, dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    const ordered_json changed = ordered_json::parse(slurp(run / "results.json"));
    for (const auto & s : changed["stages"]) {
        const std::string name  = s["stage"];
        const bool        redo  = name.find("ties") != std::string::npos;
        EXPECT_EQ(s["reused"].get<bool>(), !redo) << name;
    }

    // Bad input: an export of a row the table does not have, refused before anything runs.
    {
        std::string bad = recipe;
        bad.replace(bad.find("rows: [paft-ties, dpo]"), 22, "rows: [paft-tie]");
        spit(dir / "bad-row.yaml", bad);
        expect_input_error(run_paft({"run", (dir / "bad-row.yaml").string()}, dir), {"export: rows", "paft-tie", "paft-ties"});
    }
    // Bad input: a recipe naming a missing model.
    spit(dir / "bad.yaml", "output_dir: " + (dir / "run2").string() + "\nmodel_name_or_path: " +
                               (dir / "nowhere").string() + "\nsft:\n  train_data: x\n  l1_lambda: 0.001\n"
                               "preference:\n  train_data: y\nevaluation:\n  tasks: [t.yaml]\n");
    expect_input_error(run_paft({"run", (dir / "bad.yaml").string()}, dir), {"nowhere"});
}

// The shipped recipes read as their YAML says (values from the files, by eye).
TEST(RunRecipe, ShippedRecipesParse) {
    const RunRecipe d = read_run_recipe((kSource / "recipes/paft-default.yaml").string());
    EXPECT_EQ(d.train.output_dir, "runs/paft-default");
    EXPECT_EQ(d.train.sft.model, "models/paft-tiny");
    ASSERT_TRUE(d.synth.has_value());
    EXPECT_EQ(d.synth->seed, 0u);
    EXPECT_EQ(d.train.sft.train_data, "runs/paft-default/world/sft.jsonl");
    EXPECT_EQ(d.train.preference.train_data, "runs/paft-default/world/prefs.jsonl");
    EXPECT_EQ(d.evaluation.tasks, (std::vector<std::string>{"runs/paft-default/world/tasks/world_facts.yaml",
                                                             "runs/paft-default/world/tasks/world_sums.yaml"}));
    EXPECT_EQ(d.evaluation.winrate, "runs/paft-default/world/judge.jsonl");
    EXPECT_DOUBLE_EQ(d.train.sft.l1_lambda, 5e-5);
    ASSERT_EQ(d.merges.size(), 5u);
    EXPECT_EQ(d.merges[2].method, "ties");
    EXPECT_EQ(d.merges[2].densities, (std::vector<double>{0.5, 0.5}));
    EXPECT_EQ(d.exports.types, (std::vector<ExportType>{ExportType::Q8_0}));
    EXPECT_EQ(d.exports.rows, (std::vector<std::string>{"paft-ties"}));

    const RunRecipe m = read_run_recipe((kSource / "recipes/paft-mistral-7b.yaml").string(), "runs/elsewhere");
    EXPECT_EQ(m.train.output_dir, "runs/elsewhere");
    EXPECT_FALSE(m.synth.has_value());
    EXPECT_EQ(m.train.sft.chat_template, "zephyr");
    EXPECT_DOUBLE_EQ(m.train.sft.l1_lambda, 1e-4);
    EXPECT_DOUBLE_EQ(m.train.sft.learning_rate, 2e-4);
    EXPECT_DOUBLE_EQ(m.train.preference.learning_rate, 5e-6);
    EXPECT_DOUBLE_EQ(m.train.preference.preference.beta, 0.01);
    // QLoRA, as the handbook's zephyr-7b-beta LoRA recipe: both branches on an NF4 base.
    EXPECT_EQ(m.train.sft.load_options().quantization, Quantization::NF4);
    EXPECT_EQ(m.train.preference.load_options().quantization, Quantization::NF4);
    EXPECT_EQ(m.evaluation.tasks, (std::vector<std::string>{"leaderboard"}));
    EXPECT_EQ(m.merges.size(), 5u);
}

// Everything a run reads is checked before its first stage: a missing task file (or judge file, or
// dataset) fails at once, with nothing made, not after the trainings and merges.
TEST(RunRecipe, MissingInputsFailBeforeAnyStage) {
    const fs::path    dir   = fresh_test_folder("run-inputs");
    const std::string tiny  = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny";
    const std::string data  = std::string(PAFT_SOURCE_DIR) + "/tests/data/datasets";
    auto              write = [&](const std::string & tasks, const std::string & winrate, const std::string & sft) {
        spit(dir / "recipe.yaml", "output_dir: " + (dir / "run").string() + "\nmodel_name_or_path: " + tiny +
                                      "\nmax_steps: 1\nsft:\n  train_data: " + sft +
                                      "\n  l1_lambda: 1.0e-3\npreference:\n  method: dpo\n  train_data: " + data +
                                      "/pref.jsonl\nevaluation:\n  tasks: [" + tasks + "]\n" +
                                      (winrate.empty() ? "" : "  winrate: " + winrate + "\n"));
        return run_paft({"run", (dir / "recipe.yaml").string()}, dir);
    };
    const std::string task = std::string(PAFT_SOURCE_DIR) + "/tests/data/eval/custom/mc.yaml";
    const struct {
        std::string tasks, winrate, sft;
        std::vector<std::string> needles;
    } cases[] = {
        {(dir / "missing_task.yaml").string(), "", data + "/sft.jsonl", {"missing_task.yaml"}},
        {task, (dir / "missing_judge.jsonl").string(), data + "/sft.jsonl", {"missing_judge.jsonl"}},
        {task, "", (dir / "missing_sft.jsonl").string(), {"sft: train_data", "missing_sft.jsonl"}},
    };
    for (const auto & c : cases) {
        SCOPED_TRACE(c.needles[0]);
        const RunResult r = write(c.tasks, c.winrate, c.sft);
        expect_input_error(r, c.needles);
        EXPECT_FALSE(fs::exists(dir / "run")) << "the run's folder was made";
    }
}
