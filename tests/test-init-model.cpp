// Random models written by streaming (write_random_model, `paft init-model`): the same bytes as
// Model::random(config, seed)->save(...) (f32, bf16, f16; one file or shards plus the index; with
// biases, tied embeddings and Mistral's config.json), an existing output folder overwritten as
// Model::save does, and failures (a destination that cannot be written, a write aborted half way)
// leaving nothing behind.
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/random_model.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace fs = std::filesystem;
using namespace paft;

namespace {

// Every file under `dir` (names relative to it) with its bytes.
std::map<std::string, std::string> folder_files(const fs::path & dir) {
    std::map<std::string, std::string> files;
    for (const fs::directory_entry & e : fs::recursive_directory_iterator(dir)) {
        if (e.is_regular_file()) {
            files[fs::relative(e.path(), dir).string()] = slurp(e.path());
        }
    }
    return files;
}

std::vector<std::string> names_in(const fs::path & dir) {
    std::vector<std::string> names;
    for (const fs::directory_entry & e : fs::directory_iterator(dir)) {
        names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

// The same files with the same bytes (a mismatch names the file rather than dumping megabytes).
void expect_same_files(const fs::path & got_dir, const fs::path & want_dir) {
    const auto got = folder_files(got_dir), want = folder_files(want_dir);
    std::vector<std::string> got_names, want_names;
    for (const auto & [name, bytes] : got) got_names.push_back(name);
    for (const auto & [name, bytes] : want) want_names.push_back(name);
    ASSERT_EQ(got_names, want_names);
    for (const auto & [name, bytes] : want) {
        EXPECT_TRUE(got.at(name) == bytes) << name << " differs (" << got.at(name).size() << " vs " << bytes.size()
                                           << " bytes)";
    }
}

uint64_t model_bytes(const ModelConfig & c, DType dtype) { return ParamLayout(c).size() * dtype_size(dtype); }

// Llama with every bias and tied embeddings: norms 1, biases 0 and no lm_head in the layout.
ModelConfig biased_tied_config() {
    ModelConfig c         = small_test_config(2);
    c.attention_bias      = true;
    c.o_proj_bias         = true;
    c.mlp_bias            = true;
    c.tie_word_embeddings = true;
    return c;
}

// Odd sizes and tensors of several of the parallel draw's chunks (65536 values): embed [4999, 33]
// (odd, so the next tensor starts on Box-Muller's spare value), gate/up [2001, 33] (odd, 1+ chunk).
ModelConfig odd_chunked_config() {
    ModelConfig c       = small_test_config(2);
    c.hidden_size       = 33;
    c.intermediate_size = 2001;
    c.vocab_size        = 4999;
    return c;
}

ModelConfig mistral_config() {
    ModelConfig c       = small_test_config(2);
    c.architecture      = Architecture::Mistral;
    c.architecture_name = "MistralForCausalLM";
    c.sliding_window    = 16;
    c.rope_theta        = 1e6f;
    return c;
}

}  // namespace

// random_init_values over the layout, with one Random, is Model::random's buffer bit for bit.
TEST(InitModel, ValuesAreModelRandoms) {
    for (const ModelConfig & c : {model_preset("tiny"), biased_tied_config(), mistral_config(), odd_chunked_config()}) {
        const auto  model = Model::random(c, 11);
        Random      rng(11);
        for (const ParamEntry & e : model->layout().entries()) {
            std::vector<float> values(e.numel());
            random_init_values(e, rng, values.data());
            EXPECT_EQ(std::memcmp(values.data(), model->data() + e.offset, values.size() * sizeof(float)), 0) << e.name;
        }
    }
}

// The parallel draw is the sequential one, value for value and in the generator's state after
// it, whatever the thread count: from an even and an odd count of values drawn before, over sizes
// around the chunk size (65536), odd and even.
TEST(InitModel, ParallelDrawIsTheSequentialDraw) {
    const int threads = omp_get_max_threads();
    for (int t : {1, 2, 3, 8}) {
        omp_set_num_threads(t);
        for (uint64_t before : {0, 1, 2, 7}) {
            for (int64_t n : {1, 2, 65535, 65536, 65537, 131072, 3 * 65536 + 11}) {
                const ParamEntry e{"model.layers.0.mlp.down_proj.weight", {n}, 0};
                Random           sequential(42), parallel(42);
                for (uint64_t i = 0; i < before; i++) {
                    sequential.normal();
                    parallel.normal();
                }
                std::vector<float> want(n), got(n);
                random_init_values(e, sequential, want.data());
                random_init_values_parallel(e, parallel, before, got.data());
                ASSERT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0)
                    << t << " threads, " << before << " drawn before, " << n << " values";
                for (int i = 0; i < 3; i++) {  // the same state after (spare value included)
                    ASSERT_EQ(parallel.normal(), sequential.normal()) << t << " threads, " << before << ", " << n;
                }
            }
        }
    }
    omp_set_num_threads(threads);
    // Norms and biases draw nothing.
    EXPECT_EQ(random_init_draws({"model.norm.weight", {8}, 0}), 0u);
    EXPECT_EQ(random_init_draws({"model.layers.3.self_attn.q_proj.bias", {8}, 0}), 0u);
    EXPECT_EQ(random_init_draws({"lm_head.weight", {8, 4}, 0}), 32u);
}

// dtype x shard size: the files are byte-identical to Model::random(...)->save(...).
class InitModelBytes : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(InitModelBytes, SameFilesAsModelSave) {
    const auto [dtype, sharded] = GetParam();
    const fs::path dir          = fresh_test_folder("paft-init-model");
    for (const ModelConfig & c : {model_preset("tiny"), biased_tied_config(), mistral_config(), odd_chunked_config()}) {
        // A third of the model per shard: several shards plus the index.
        const uint64_t shard = sharded ? model_bytes(c, dtype) / 3 : 5ull << 30;
        const std::string name = c.architecture_name + "-" + std::to_string(c.vocab_size);
        const fs::path    want = dir / (name + "-want"), got = dir / (name + "-got");
        Model::random(c, 5)->save(want.string(), dtype, shard);
        write_random_model(c, 5, dtype, got.string(), shard);
        expect_same_files(got, want);
        EXPECT_EQ(fs::exists(want / "model.safetensors.index.json"), sharded);
        if (sharded) {
            EXPECT_GE(folder_files(got).size(), 5u);  // >= 3 shards, the index, config.json
        }
        // Nothing else beside the output: the partial folder is gone.
        EXPECT_FALSE(fs::exists(dir / ("." + name + "-got.paft-partial")));
        fs::remove_all(want);
        fs::remove_all(got);
    }
    EXPECT_TRUE(names_in(dir).empty());
}

INSTANTIATE_TEST_SUITE_P(DTypes, InitModelBytes,
                         ::testing::Combine(::testing::Values(DType::F32, DType::BF16, DType::F16),
                                            ::testing::Bool()),
                         [](const auto & info) {
                             return std::string(dtype_name(std::get<0>(info.param))) +
                                    (std::get<1>(info.param) ? "_sharded" : "_single");
                         });

// Progress reports bytes of tensor data, growing to the total.
TEST(InitModel, ReportsProgress) {
    const fs::path          dir = fresh_test_folder("paft-init-model");
    const ModelConfig       c   = model_preset("tiny");
    std::vector<uint64_t>   seen;
    uint64_t                total = 0;
    write_random_model(c, 1, DType::BF16, (dir / "m").string(), 5ull << 30, [&](uint64_t written, uint64_t all) {
        seen.push_back(written);
        total = all;
    });
    EXPECT_EQ(total, model_bytes(c, DType::BF16));
    ASSERT_EQ(seen.size(), ParamLayout(c).entries().size());
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(seen.back(), total);
}

// An existing model folder: the model files are replaced (stale ones of the other layout
// removed), other files such as a tokenizer kept, as Model::save does.
TEST(InitModel, OverwritesAnExistingModelFolder) {
    const fs::path    dir = fresh_test_folder("paft-init-model");
    const ModelConfig c   = model_preset("tiny");
    const uint64_t    shard = model_bytes(c, DType::F16) / 3;
    Model::random(c, 2)->save((dir / "want").string(), DType::F16, shard);

    // Sharded over an earlier single-file f32 model (another seed) with a tokenizer beside it.
    const fs::path out = dir / "out";
    write_random_model(c, 9, DType::F32, out.string());
    spit(out / "tokenizer.json", "{}");
    spit(out / "model-00001-of-00009.safetensors", "stale");
    write_random_model(c, 2, DType::F16, out.string(), shard);
    EXPECT_EQ(slurp(out / "tokenizer.json"), "{}");
    fs::remove(out / "tokenizer.json");
    expect_same_files(out, dir / "want");

    // And back to one file: the shards and the index go.
    Model::random(c, 3)->save((dir / "want1").string(), DType::BF16);
    write_random_model(c, 3, DType::BF16, out.string());
    expect_same_files(out, dir / "want1");
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out", "want", "want1"}));
}

// An existing empty folder (e.g. made by the caller) is filled; a symlink to a folder is written
// through, not replaced.
TEST(InitModel, FillsAnEmptyFolderAndFollowsASymlink) {
    const fs::path    dir = fresh_test_folder("paft-init-model");
    const ModelConfig c   = model_preset("tiny");
    Model::random(c, 4)->save((dir / "want").string(), DType::BF16);
    fs::create_directories(dir / "empty");
    write_random_model(c, 4, DType::BF16, (dir / "empty").string());
    expect_same_files(dir / "empty", dir / "want");

    fs::create_directories(dir / "target");
    fs::create_directory_symlink(dir / "target", dir / "link");
    write_random_model(c, 4, DType::BF16, (dir / "link" / "").string());  // trailing slash too
    EXPECT_TRUE(fs::is_symlink(dir / "link"));
    expect_same_files(dir / "target", dir / "want");
}

// A destination that cannot be written fails before or while writing and leaves nothing behind.
TEST(InitModel, UnwritableDestinationLeavesNothing) {
    const fs::path    dir = fresh_test_folder("paft-init-model");
    const ModelConfig c   = model_preset("tiny");
    spit(dir / "file", "not a folder");

    // Under a regular file: the partial folder cannot be created.
    EXPECT_THROW(write_random_model(c, 1, DType::BF16, (dir / "file" / "model").string()), RuntimeFailure);
    // The destination itself a regular file: bad input, the file untouched.
    expect_input_error([&] { write_random_model(c, 1, DType::BF16, (dir / "file").string()); },
                       {(dir / "file").string(), "not a folder"});
    EXPECT_EQ(slurp(dir / "file"), "not a folder");
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"file"}));
}

// A write that fails half way (here the progress callback throws after two tensors) leaves no
// output folder, no partial folder and no parent folders it created; an existing model stays as it was.
TEST(InitModel, FailureHalfWayLeavesNothing) {
    const fs::path    dir = fresh_test_folder("paft-init-model");
    const ModelConfig c   = model_preset("tiny");
    int               calls = 0;
    const WriteProgress fail_at_two = [&](uint64_t, uint64_t) {
        if (++calls == 2) {
            throw RuntimeFailure("disk on fire");
        }
    };
    EXPECT_THROW(write_random_model(c, 1, DType::F32, (dir / "a" / "b" / "model").string(), 1 << 16, fail_at_two),
                 RuntimeFailure);
    EXPECT_TRUE(names_in(dir).empty());

    write_random_model(c, 1, DType::F32, (dir / "model").string());
    const auto before = folder_files(dir / "model");
    calls             = 0;
    EXPECT_THROW(write_random_model(c, 2, DType::BF16, (dir / "model").string(), 1 << 16, fail_at_two), RuntimeFailure);
    EXPECT_TRUE(folder_files(dir / "model") == before);
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"model"}));
}

// A partial folder left by a killed write is replaced.
TEST(InitModel, ReplacesALeftoverPartialFolder) {
    const fs::path    dir = fresh_test_folder("paft-init-model");
    const ModelConfig c   = model_preset("tiny");
    fs::create_directories(dir / ".model.paft-partial");
    spit(dir / ".model.paft-partial" / "model-00001-of-00002.safetensors", "half");
    Model::random(c, 6)->save((dir / "want").string(), DType::F32);
    write_random_model(c, 6, DType::F32, (dir / "model").string());
    expect_same_files(dir / "model", dir / "want");
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"model", "want"}));
}

// More than the file system holds: refused up front with a message, nothing written.
TEST(InitModel, RefusesAModelLargerThanTheDisk) {
    const fs::path dir = fresh_test_folder("paft-init-model");
    ModelConfig    c   = model_preset("tiny");
    c.vocab_size       = 1 << 30;  // a 2^30 x 64 embedding: 256 GiB of f32 (twice, with lm_head)
    c.hidden_size      = 64;
    try {
        write_random_model(c, 1, DType::F32, (dir / "huge").string());
        ADD_FAILURE() << "no RuntimeFailure (does " << dir << " have 512 GiB free?)";
    } catch (const RuntimeFailure & e) {
        EXPECT_NE(std::string(e.what()).find("free"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(names_in(dir).empty());
}

// The command: exit 0, its line on stdout, the files of Model::random(preset, seed)->save.
TEST(InitModelCli, WritesThePreset) {
    const fs::path  dir = fresh_test_folder("paft-init-model-cli");
    const RunResult r   = run_paft({"init-model", "--preset", "tiny", "--dtype", "bf16", "--seed", "3", "--out",
                                    (dir / "model").string()},
                                   dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.out.find("wrote LlamaForCausalLM"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("bf16"), std::string::npos) << r.out;
    Model::random(model_preset("tiny"), 3)->save((dir / "want").string(), DType::BF16);
    expect_same_files(dir / "model", dir / "want");
}

TEST(InitModelCli, UnwritableOutIsARuntimeFailure) {
    const fs::path dir = fresh_test_folder("paft-init-model-cli");
    spit(dir / "file", "x");
    const RunResult r = run_paft({"init-model", "--preset", "tiny", "--out", (dir / "file" / "model").string()}, dir);
    EXPECT_EQ(r.code, 1) << describe(r);
    EXPECT_NE(r.err.find("paft: error: "), std::string::npos) << describe(r);
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"file"}));
    expect_input_error(run_paft({"init-model", "--preset", "tiny", "--out", (dir / "file").string()}, dir),
                       {"not a folder"});
}
