// AdamW against torch.optim.AdamW: three steps on one parameter vector with the gradients the
// reference used (tools/reference/make_cases.py, adamw.safetensors).
#include "io/safetensors.h"
#include "train/adamw.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

using namespace paft;

TEST(AdamW, MatchesTorch) {
    const std::string path = std::string(PAFT_TESTDATA) + "/adamw.safetensors";
    SafetensorsFile   file(path);
    TensorStore       store = TensorStore::open_file(path);
    const auto &      meta  = file.metadata();
    AdamWConfig       config;
    config.lr           = std::stof(meta.at("lr"));
    config.beta1        = std::stof(meta.at("beta1"));
    config.beta2        = std::stof(meta.at("beta2"));
    config.eps          = std::stof(meta.at("eps"));
    config.weight_decay = std::stof(meta.at("weight_decay"));

    std::vector<int64_t> shape;
    std::vector<float>   params = store.read_f32_any("params0", &shape);
    AdamW                optimizer(params.size(), config);
    for (int t = 1; t <= 3; t++) {
        std::vector<float> grad = store.read_f32_any("grad." + std::to_string(t), &shape);
        std::vector<float> want = store.read_f32_any("params." + std::to_string(t), &shape);
        optimizer.step(params.data(), grad.data());
        double max_diff = 0, max_step = 0;
        std::vector<float> before = t == 1 ? store.read_f32_any("params0", &shape)
                                           : store.read_f32_any("params." + std::to_string(t - 1), &shape);
        for (size_t i = 0; i < params.size(); i++) {
            max_diff = nan_max(max_diff, std::fabs((double) params[i] - want[i]));
            max_step = std::max(max_step, (double) std::fabs(want[i] - before[i]));
        }
        // Relative to the size of the update itself, so a wrong update cannot hide in the parameters.
        ASSERT_GT(max_step, 0.0);
        EXPECT_LE(max_diff / max_step, 1e-4) << "step " << t;
    }
    EXPECT_EQ(optimizer.steps(), 3);
}
