// config.json parsing and batch construction, against hand-written inputs and expectations.
#include "core/error.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

using namespace paft;

namespace {

std::string llama_json(const std::string & extra) {
    return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)" +
           extra + "}";
}

TEST(Config, LlamaDefaults) {
    ModelConfig c = parse_model_config(llama_json(""), "config.json");
    EXPECT_EQ(c.num_kv_heads, 4);  // defaults to the query heads
    EXPECT_EQ(c.head_dim, 16);     // hidden / heads
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_FALSE(c.attention_bias);
    EXPECT_EQ(c.qkv_dim(), 64 + 2 * 64);
}

TEST(Config, Llama3RopeScalingAndEosList) {
    ModelConfig c = parse_model_config(
        llama_json(R"(, "head_dim": 32, "num_key_value_heads": 2, "eos_token_id": [97, 99],
                   "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"),
        "config.json");
    EXPECT_TRUE(c.rope_scaling.llama3);
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_EQ(c.head_dim, 32);
    EXPECT_EQ(c.eos_token_id, 97);  // the first of the list (Llama 3's are 128001 and 128009)
    // inv_freq by hand: i = 0 is 1 (wavelength 2 pi, high band: unchanged); the last,
    // 1/500000^(30/32), has wavelength ~1.4e6 > 8192: divided by the factor 8.
    std::vector<float> inv = rope_inv_freq(c);
    ASSERT_EQ(inv.size(), 16u);
    EXPECT_FLOAT_EQ(inv[0], 1.0f);
    EXPECT_NEAR(inv[15], std::pow(500000.0, -30.0 / 32.0) / 8.0, 1e-12);
}

TEST(Config, MistralWindowDefaultsAsTransformers) {
    const std::string base = R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 32, "vocab_size": 100)";
    EXPECT_EQ(parse_model_config(base + "}", "c").num_kv_heads, 8);  // MistralConfig's default
    EXPECT_EQ(parse_model_config(base + "}", "c").sliding_window, 4096);
    EXPECT_EQ(parse_model_config(base + R"(, "sliding_window": null})", "c").sliding_window, 0);
    EXPECT_EQ(parse_model_config(base + R"(, "sliding_window": 32})", "c").sliding_window, 32);
}

TEST(Config, Qwen2HasQkvBiasesOnly) {
    ModelConfig c = parse_model_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
        "num_key_value_heads": 2, "use_sliding_window": false, "sliding_window": 32768})",
                                       "c");
    EXPECT_TRUE(c.attention_bias);
    EXPECT_FALSE(c.o_proj_bias);
    EXPECT_EQ(c.sliding_window, 0);
}

TEST(Config, LlamaAttentionBiasCoversOProj) {
    ModelConfig c = parse_model_config(llama_json(R"(, "attention_bias": true, "mlp_bias": true)"), "c");
    EXPECT_TRUE(c.attention_bias && c.o_proj_bias && c.mlp_bias);
}

TEST(Config, ErrorsNameTheFileAndField) {
    auto message = [](const std::string & text) {
        try {
            parse_model_config(text, "dir/config.json");
        } catch (const InputError & e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message(llama_json(R"(, "num_key_value_heads": 3)")).find("num_key_value_heads"), std::string::npos);
    EXPECT_NE(message(llama_json(R"(, "hidden_act": "gelu")")).find("hidden_act"), std::string::npos);
    EXPECT_NE(message(llama_json(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 2.0})")).find("yarn"),
              std::string::npos);
    EXPECT_NE(message(llama_json(R"(, "hidden_size": "64")")).find("hidden_size"), std::string::npos);
    EXPECT_NE(message(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
        "use_sliding_window": true})")
                  .find("use_sliding_window"),
              std::string::npos);
    EXPECT_NE(message("[1, 2]").find("dir/config.json"), std::string::npos);
    // sizes whose products overflow the kernels' ints
    EXPECT_NE(message(llama_json(R"(, "num_key_value_heads": 65536, "num_attention_heads": 65536,
                                    "head_dim": 65536)"))
                  .find("too large"),
              std::string::npos);
    // a deeply nested value is reported by kind, never dumped (dump() would recurse); past 512
    // levels the text is refused before it is parsed
    const std::string within = std::string(500, '[') + std::string(500, ']');
    EXPECT_NE(message(llama_json(R"(, "rope_theta": )" + within)).find("rope_theta"), std::string::npos);
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    EXPECT_NE(message(llama_json(R"(, "rope_theta": )" + deep)).find("nested deeper than 512 levels"),
              std::string::npos);
}

TEST(Batch, RightPaddingTargetsAndPositions) {
    Batch b = batch_from_rows({{5, 6, 7}, {8, 9}}, nullptr, 0, false, 10);
    ASSERT_EQ(b.B, 2);
    ASSERT_EQ(b.T, 3);
    EXPECT_EQ(b.input_ids, (std::vector<int32_t>{5, 6, 7, 8, 9, 0}));
    EXPECT_EQ(b.attention_mask, (std::vector<int32_t>{1, 1, 1, 1, 1, 0}));
    EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 0, 1, 1}));
    // position t predicts token t+1; nothing after the last real token
    EXPECT_EQ(b.targets, (std::vector<int32_t>{6, 7, -1, 9, -1, -1}));
    EXPECT_EQ(b.target_count(), 3);
    std::vector<float> g = mean_nll_gradient(b);
    EXPECT_FLOAT_EQ(g[0], -1.0f / 3.0f);
    EXPECT_FLOAT_EQ(g[2], 0.0f);
}

TEST(Batch, LeftPaddingAndLabels) {
    std::vector<std::vector<int32_t>> labels = {{-100, 6, 7}, {-100, 9}};
    Batch b = batch_from_rows({{5, 6, 7}, {8, 9}}, &labels, 3, true, 10);
    EXPECT_EQ(b.input_ids, (std::vector<int32_t>{5, 6, 7, 3, 8, 9}));
    EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 1, 0, 1}));  // pads at 1, as transformers
    EXPECT_EQ(b.targets, (std::vector<int32_t>{6, 7, -1, -1, 9, -1}));
}

TEST(Batch, TokenOutsideVocabularyIsAnError) {
    EXPECT_THROW(batch_from_rows({{1, 10}}, nullptr, 0, false, 10), InputError);
    EXPECT_THROW(batch_from_rows({{-1, 2}}, nullptr, 0, false, 10), InputError);
}

}  // namespace
