// A full disk in the middle of a write: every command that writes leaves nothing but what was
// complete before (no partial folder, no half file, no stray metrics), and says what failed
// (exit 1). The disk is a small tmpfs mounted in a user and mount namespace of our own
// (unshare -rm), so the test needs no privileges; where the system allows no such namespace it
// is skipped with a message.
#include "model/config.h"
#include "model/lora.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny";
const std::string kData = std::string(PAFT_SOURCE_DIR) + "/tests/data";

bool can_mount_tmpfs() {
    static const bool can = std::system("unshare -rm sh -c 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d "
                                        "&& umount $d && rmdir $d' >/dev/null 2>&1") == 0;
    return can;
}

struct DiskRun {
    RunResult                result;
    std::vector<std::string> left;  // what the disk holds afterwards, paths relative to it
};

// Runs paft with `args` ({disk} replaced by the mount point) with a tmpfs of `size` (e.g. "64k")
// mounted at DIR/disk, and lists what the disk holds before the namespace (and the tmpfs) ends.
DiskRun run_on_full_disk(const fs::path & dir, const std::string & size, std::vector<std::string> args) {
    const fs::path disk = dir / "disk";
    fs::create_directories(disk);
    for (std::string & a : args) {
        for (size_t at = a.find("{disk}"); at != std::string::npos; at = a.find("{disk}")) {
            a.replace(at, 6, disk.string());
        }
    }
    const std::string q      = shell_quote(disk.string());
    const std::string script = "mount -t tmpfs -o size=" + size + " tmpfs " + q + " && { " + paft_command(args) +
                               " 2>" + shell_quote((dir / "err.txt").string()) + "; echo $? > " +
                               shell_quote((dir / "rc.txt").string()) + "; cd " + q + " && find . -mindepth 1 | sort > " +
                               shell_quote((dir / "left.txt").string()) + "; }";
    const int status = std::system(("unshare -rm sh -c " + shell_quote(script) + " >/dev/null 2>&1").c_str());
    DiskRun   run;
    run.result.code = status == 0 && fs::exists(dir / "rc.txt") ? std::stoi(slurp(dir / "rc.txt")) : -1;
    run.result.err  = fs::exists(dir / "err.txt") ? slurp(dir / "err.txt") : "";
    std::istringstream left(fs::exists(dir / "left.txt") ? slurp(dir / "left.txt") : "");
    for (std::string line; std::getline(left, line);) {
        run.left.push_back(line.substr(2));  // "./"
    }
    return run;
}

void tiny_adapter(const fs::path & dir) {
    paft::LoraConfig lora;
    lora.r       = 4;
    lora.alpha   = 8.0f;
    lora.targets = paft::parse_lora_targets("q_proj,v_proj");
    paft::LoraAdapter adapter(paft::load_model_config(kTiny), lora);
    adapter.init_peft(3);
    for (float & v : adapter.params()) {
        if (v == 0.0f) v = 0.01f;
    }
    adapter.save(dir.string(), kTiny);
}

std::string joined(const std::vector<std::string> & names) {
    std::string s;
    for (const auto & n : names) s += n + "\n";
    return s;
}

class FullDisk : public ::testing::Test {
protected:
    void SetUp() override {
        if (!can_mount_tmpfs()) {
            GTEST_SKIP() << "cannot mount a tmpfs in a user namespace here (unshare -rm): full-disk tests skipped";
        }
        dir_ = fresh_test_folder("paft-full-disk");
    }
    // The command fails at run time, naming the full disk, and leaves the disk empty.
    void expect_nothing_left(const std::string & size, const std::vector<std::string> & args) {
        const DiskRun run = run_on_full_disk(dir_, size, args);
        EXPECT_EQ(run.result.code, 1) << describe(run.result);
        EXPECT_TRUE(run.result.err.find("No space left on device") != std::string::npos ||
                    run.result.err.find("free") != std::string::npos)
            << describe(run.result);
        EXPECT_TRUE(run.left.empty()) << "left on the disk:\n" << joined(run.left);
    }
    fs::path dir_;
};

TEST_F(FullDisk, SftLeavesNothing) {
    spit(dir_ / "data.jsonl", "{\"input_ids\": [3, 4, 5, 6, 7, 8]}\n");
    expect_nothing_left("64k", {"sft", "--model", kTiny, "--data", (dir_ / "data.jsonl").string(), "--out",
                                "{disk}/adapter", "--max-steps", "2", "--threads", "1"});
}

TEST_F(FullDisk, PretrainLeavesNothing) {
    spit(dir_ / "corpus.jsonl", "{\"text\": \"one two three four five six seven\"}\n");
    expect_nothing_left("64k", {"pretrain", "--data", (dir_ / "corpus.jsonl").string(), "--tokenizer", kTiny,
                                "--preset", "tiny", "--out", "{disk}/model", "--max-steps", "1", "--threads", "1"});
}

TEST_F(FullDisk, InitModelLeavesNothing) {
    expect_nothing_left("64k", {"init-model", "--preset", "tiny", "--out", "{disk}/model"});
}

TEST_F(FullDisk, MergeLeavesNothing) {
    tiny_adapter(dir_ / "a");
    expect_nothing_left("64k", {"merge", "--base", kTiny, "--adapter", (dir_ / "a").string(), "--out", "{disk}/merged"});
    // The rank-4 delta of q_proj and v_proj is 32 KB in f32.
    expect_nothing_left("16k", {"merge", "--base", kTiny, "--adapter", (dir_ / "a").string(), "--out", "{disk}/merged",
                                "--out-format", "lora", "--rank", "4"});
}

TEST_F(FullDisk, ExportLeavesNothing) {
    expect_nothing_left("64k", {"export", "--model", kTiny, "--out", "{disk}/tiny.gguf"});
}

TEST_F(FullDisk, RunLeavesNothing) {
    spit(dir_ / "recipe.yaml", "output_dir: {disk}/run\nmodel_name_or_path: " + kTiny +
                                   "\nmax_steps: 1\nthreads: 1\nsft:\n  train_data: " + kData +
                                   "/datasets/sft.jsonl\n  l1_lambda: 1.0e-3\npreference:\n  method: dpo\n  train_data: " + kData +
                                   "/datasets/pref.jsonl\nevaluation:\n  tasks: [" + kData +
                                   "/eval/custom/mc.yaml]\n");
    const std::string recipe = slurp(dir_ / "recipe.yaml");
    std::string       text   = recipe;
    text.replace(text.find("{disk}"), 6, (dir_ / "disk").string());
    spit(dir_ / "recipe.yaml", text);
    expect_nothing_left("64k", {"run", (dir_ / "recipe.yaml").string()});
}

// generate and eval keep what is complete (their resume files), whole records only.
TEST_F(FullDisk, GenerateKeepsWholeRecordsOnly) {
    std::string prompts;
    for (int i = 0; i < 60; i++) prompts += "{\"prompt\": \"Tell me about the number " + std::to_string(i) + ".\"}\n";
    spit(dir_ / "in.jsonl", prompts);
    const DiskRun run = run_on_full_disk(dir_, "4k", {"generate", "--model", kTiny, "--data", (dir_ / "in.jsonl").string(),
                                                      "--out", "{disk}/out.jsonl", "--max-new-tokens", "8",
                                                      "--threads", "1"});
    EXPECT_EQ(run.result.code, 1) << describe(run.result);
    EXPECT_NE(run.result.err.find("No space left on device"), std::string::npos) << describe(run.result);
    for (const std::string & name : run.left) {
        EXPECT_EQ(name, "out.jsonl.partial") << "left on the disk:\n" << joined(run.left);
    }
}

TEST_F(FullDisk, EvalLeavesNothingButFinishedTasks) {
    const DiskRun run = run_on_full_disk(dir_, "4k", {"eval", "--model", kTiny, "--tasks", "arc_easy", "--data-dir",
                                                      kData + "/eval", "--limit", "20", "--num-fewshot", "0", "--out", "{disk}/r.json",
                                                      "--log-samples", "{disk}/samples", "--threads", "1"});
    EXPECT_EQ(run.result.code, 1) << describe(run.result);
    for (const std::string & name : run.left) {
        EXPECT_EQ(name, "r.json.partial") << "left on the disk:\n" << joined(run.left);
    }
}

}  // namespace
