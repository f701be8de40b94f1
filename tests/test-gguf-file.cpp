// GGUF files without llama.cpp: the header's bytes against a hand-written file, round trips of
// every metadata type and tensor type, the reader's refusals, and the export's naming, rotary row
// order and type rules against hand-derived expectations. (test-gguf-export checks the files
// against llama.cpp itself.)
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_model.h"
#include "io/fs.h"
#include "model/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <set>

using namespace paft;

namespace {

std::string temp_path(const std::string & name) {
    const std::string dir = (std::filesystem::temp_directory_path() / "paft-test-gguf-file").string();
    make_dirs(dir);
    return dir + "/" + name;
}

template <class T> void put(std::string & s, T v) { s.append(reinterpret_cast<const char *>(&v), sizeof v); }
void put_str(std::string & s, const std::string & v) {
    put<uint64_t>(s, v.size());
    s += v;
}

ModelConfig llama_config() {
    ModelConfig c;
    c.architecture      = Architecture::Llama;
    c.hidden_size       = 256;
    c.intermediate_size = 512;
    c.num_layers        = 32;
    c.num_heads         = 4;
    c.num_kv_heads      = 2;
    c.head_dim          = 64;
    c.vocab_size        = 1000;
    return c;
}

}  // namespace

TEST(GgufFile, HeaderBytesAsTheFormatSpecifies) {
    // One u32 key and one f32 tensor [2, 3] (dims written innermost first), data at offset 0 of
    // the data section, which starts at the header's end rounded up to 32 bytes.
    GgufWriter w;
    w.set_u32("a.b", 7);
    w.add_tensor("t", {2, 3}, GgmlType::F32);
    const std::string path = temp_path("header.gguf");
    const float       data[6] = {1, 2, 3, 4, 5, 6};
    w.write(path, [&](size_t, const GgufWriter::WriteBytes & write) { write(data, sizeof data); });

    std::string expect;
    expect += "GGUF";
    put<uint32_t>(expect, 3);
    put<uint64_t>(expect, 1);  // tensors
    put<uint64_t>(expect, 1);  // key/values
    put_str(expect, "a.b");
    put<uint32_t>(expect, 4);  // u32
    put<uint32_t>(expect, 7);
    put_str(expect, "t");
    put<uint32_t>(expect, 2);  // dims
    put<uint64_t>(expect, 3);
    put<uint64_t>(expect, 2);
    put<uint32_t>(expect, 0);  // f32
    put<uint64_t>(expect, 0);  // offset
    ASSERT_EQ(expect.size(), 4 + 4 + 8 + 8 + (8 + 3 + 4 + 4) + (8 + 1 + 4 + 16 + 4 + 8));
    expect.resize(96, '\0');  // 72 bytes of header, padded to 96
    expect.append(reinterpret_cast<const char *>(data), sizeof data);
    EXPECT_EQ(read_file(path), expect);
}

TEST(GgufFile, RoundTripOfEveryValueAndTensorType) {
    GgufWriter w;
    w.set_u32("k.u32", 4000000000u);
    w.set_i32("k.i32", -5);
    w.set_u64("k.u64", 1ull << 40);
    w.set_f32("k.f32", 0.25f);
    w.set_bool("k.bool", true);
    w.set_string("k.str", "h\xC3\xA9llo");
    w.set_strings("k.strs", {"a", "", "b c"});
    w.set_f32s("k.f32s", {-1.5f, 2.0f});
    w.set_i32s("k.i32s", {1, -2, 3});
    w.set_u32("k.u32", 9);  // setting a key again replaces its value, in place
    const std::vector<GgmlType> types = {GgmlType::F32, GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                                         GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K};
    std::vector<std::vector<uint8_t>> payloads;
    for (size_t i = 0; i < types.size(); i++) {
        const size_t index = w.add_tensor("t" + std::to_string(i), {3, 256}, types[i]);
        std::vector<uint8_t> bytes(ggml_row_bytes(types[i], 256) * 3);
        for (size_t b = 0; b < bytes.size(); b++) bytes[b] = (uint8_t) (b * 7 + i);
        if (types[i] == GgmlType::F32) {  // finite floats, so read_f32 below is meaningful
            for (size_t v = 0; v < 3 * 256; v++) {
                const float x = (float) v;
                std::memcpy(bytes.data() + 4 * v, &x, 4);
            }
        }
        payloads.push_back(bytes);
        EXPECT_EQ(w.tensors()[index].offset % 32, 0u);
    }
    const std::string path = temp_path("roundtrip.gguf");
    w.write(path, [&](size_t i, const GgufWriter::WriteBytes & write) {
        // In two pieces: the writer accepts a tensor's bytes in any number of calls.
        write(payloads[i].data(), 5);
        write(payloads[i].data() + 5, payloads[i].size() - 5);
    });
    const GgufFile f(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.keys(), (std::vector<std::string>{"k.u32", "k.i32", "k.u64", "k.f32", "k.bool", "k.str", "k.strs",
                                                   "k.f32s", "k.i32s"}));
    EXPECT_EQ(f.at("k.u32").as_int(), 9);
    EXPECT_EQ(f.at("k.u32").type, GgufValueType::U32);
    EXPECT_EQ(f.at("k.i32").as_int(), -5);
    EXPECT_EQ(f.at("k.u64").as_int(), 1ll << 40);
    EXPECT_EQ(f.at("k.f32").as_number(), 0.25);
    EXPECT_EQ(f.at("k.bool").as_int(), 1);
    EXPECT_EQ(f.at("k.bool").type, GgufValueType::BOOL);
    EXPECT_EQ(f.at("k.str").as_string(), "h\xC3\xA9llo");
    EXPECT_EQ(f.at("k.strs").as_strings(), (std::vector<std::string>{"a", "", "b c"}));
    EXPECT_EQ(f.at("k.f32s").as_numbers(), (std::vector<double>{-1.5, 2.0}));
    EXPECT_EQ(f.at("k.i32s").as_ints(), (std::vector<int64_t>{1, -2, 3}));
    ASSERT_EQ(f.tensors().size(), types.size());
    for (size_t i = 0; i < types.size(); i++) {
        const GgufTensorInfo & t = f.tensors()[i];
        EXPECT_EQ(t.name, "t" + std::to_string(i));
        EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 256}));
        EXPECT_EQ(t.type, types[i]);
        const auto bytes = f.bytes(t);
        EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), payloads[i]) << t.name;
    }
    const std::vector<float> v = f.read_f32(f.tensors()[0]);
    EXPECT_EQ(v[0], 0.0f);
    EXPECT_EQ(v[767], 767.0f);
}

TEST(GgufFile, TheWriterRefusesWrongSizesAndLeavesNothingBehind) {
    GgufWriter w;
    EXPECT_THROW(w.add_tensor("odd", {2, 33}, GgmlType::Q8_0), InputError);  // 33 values do not fill blocks of 32
    w.add_tensor("t", {4}, GgmlType::F32);
    const std::string path = temp_path("short.gguf");
    std::filesystem::remove(path);
    EXPECT_ANY_THROW(w.write(path, [&](size_t, const GgufWriter::WriteBytes & write) {
        const float x[3] = {};
        write(x, sizeof x);  // 12 of the tensor's 16 bytes
    }));
    EXPECT_FALSE(std::filesystem::exists(path));
    for (const auto & e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
        EXPECT_EQ(e.path().string().find("short.gguf.tmp"), std::string::npos) << e.path();
    }
}

TEST(GgufFile, TheReaderRefusesDamagedFiles) {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.add_tensor("t", {2, 32}, GgmlType::Q8_0);
    const std::string good = temp_path("good.gguf");
    w.write(good, [&](size_t, const GgufWriter::WriteBytes & write) {
        const std::vector<uint8_t> zeros(2 * 34, 0);
        write(zeros.data(), zeros.size());
    });
    const std::string bytes = read_file(good);
    auto expect_refused = [&](std::string damaged, const std::string & needle) {
        const std::string path = temp_path("damaged.gguf");
        write_file_atomic(path, damaged);
        try {
            GgufFile f(path);
            ADD_FAILURE() << "accepted a damaged file (" << needle << ")";
        } catch (const InputError & e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        }
    };
    expect_refused("GGUX" + bytes.substr(4), "bad magic");
    std::string v9 = bytes;
    v9[4] = 9;
    expect_refused(v9, "version 9");
    expect_refused(bytes.substr(0, bytes.size() - 10), "outside the file");
    expect_refused(bytes.substr(0, 40), "truncated");
    std::string huge_count = bytes;  // the key/value count claims 2^40 entries
    const uint64_t n = 1ull << 40;
    std::memcpy(huge_count.data() + 16, &n, 8);
    expect_refused(huge_count, "truncated");
    // The tensor's ggml type: after 24 bytes of counts, the key/value (8 + 20 + 4 + 8 + 5 bytes)
    // and the tensor's name (8 + 1), dim count (4) and dims (16).
    std::string    bad_type = bytes;
    const uint32_t t99      = 99;
    ASSERT_EQ(bytes.substr(24 + 8, 20), "general.architecture");
    std::memcpy(bad_type.data() + 24 + 45 + 9 + 4 + 16, &t99, 4);
    expect_refused(bad_type, "ggml type 99");
}

TEST(GgufModel, TensorNamesFollowLlamaCpp) {
    ModelConfig c = llama_config();
    c.num_layers  = 2;
    c.attention_bias = c.o_proj_bias = true;
    std::map<std::string, std::string> names;
    for (const GgufTensorPlan & p : plan_model_tensors(c, ExportType::F32)) names[p.hf_name] = p.gguf_name;
    EXPECT_EQ(names.at("model.embed_tokens.weight"), "token_embd.weight");
    EXPECT_EQ(names.at("model.norm.weight"), "output_norm.weight");
    EXPECT_EQ(names.at("lm_head.weight"), "output.weight");
    EXPECT_EQ(names.at("model.layers.1.input_layernorm.weight"), "blk.1.attn_norm.weight");
    EXPECT_EQ(names.at("model.layers.1.self_attn.q_proj.weight"), "blk.1.attn_q.weight");
    EXPECT_EQ(names.at("model.layers.1.self_attn.k_proj.bias"), "blk.1.attn_k.bias");
    EXPECT_EQ(names.at("model.layers.0.self_attn.o_proj.weight"), "blk.0.attn_output.weight");
    EXPECT_EQ(names.at("model.layers.0.self_attn.o_proj.bias"), "blk.0.attn_output.bias");
    EXPECT_EQ(names.at("model.layers.0.post_attention_layernorm.weight"), "blk.0.ffn_norm.weight");
    EXPECT_EQ(names.at("model.layers.0.mlp.gate_proj.weight"), "blk.0.ffn_gate.weight");
    EXPECT_EQ(names.at("model.layers.0.mlp.up_proj.weight"), "blk.0.ffn_up.weight");
    EXPECT_EQ(names.at("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
    EXPECT_EQ(names.size(), 3u + 2u * 13u);  // per layer: 2 norms, q k v o and their 4 biases, gate up down
    c.tie_word_embeddings = true;
    for (const GgufTensorPlan & p : plan_model_tensors(c, ExportType::F32)) EXPECT_NE(p.gguf_name, "output.weight");
}

TEST(GgufModel, RotaryRowsInterleaveEachHeadsHalves) {
    // 2 heads of D = 4, rows of one value: Hugging Face's head rows (r0 r1 | r2 r3) pair r0 with
    // r2 and r1 with r3; llama.cpp wants the pairs adjacent: r0 r2 r1 r3.
    std::vector<float> rows = {0, 1, 2, 3, 10, 11, 12, 13};
    permute_rope_rows(rows.data(), 2, 4, 1);
    EXPECT_EQ(rows, (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
    unpermute_rope_rows(rows.data(), 2, 4, 1);
    EXPECT_EQ(rows, (std::vector<float>{0, 1, 2, 3, 10, 11, 12, 13}));
    // Rows of two values move whole.
    std::vector<float> wide = {0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f};
    permute_rope_rows(wide.data(), 1, 4, 2);
    EXPECT_EQ(wide, (std::vector<float>{0, 0.5f, 2, 2.5f, 1, 1.5f, 3, 3.5f}));

    ModelConfig c = llama_config();
    c.num_layers  = 1;
    for (const GgufTensorPlan & p : plan_model_tensors(c, ExportType::F32)) {
        const int expect = p.gguf_name == "blk.0.attn_q.weight" ? 4 : p.gguf_name == "blk.0.attn_k.weight" ? 2 : 0;
        EXPECT_EQ(p.rope_heads, expect) << p.gguf_name;
    }
    c.architecture = Architecture::Qwen2;  // NeoX rotation: halves, as Hugging Face
    for (const GgufTensorPlan & p : plan_model_tensors(c, ExportType::F32)) EXPECT_EQ(p.rope_heads, 0) << p.gguf_name;
}

TEST(GgufModel, Q4KMFollowsLlamaCppsQuantizer) {
    // 32 layers: use_more_bits holds for i < 4, i >= 28 and i = 6, 9, ..., 27 ((i - 4) % 3 == 2).
    const ModelConfig c = llama_config();
    std::set<int> more = {0, 1, 2, 3, 28, 29, 30, 31};
    for (int i = 6; i < 28; i += 3) more.insert(i);
    for (const GgufTensorPlan & p : plan_model_tensors(c, ExportType::Q4_K_M)) {
        GgmlType expect = GgmlType::Q4_K;
        if (p.shape.size() == 1) expect = GgmlType::F32;
        else if (p.gguf_name == "output.weight") expect = GgmlType::Q6_K;
        else if ((p.gguf_name.ends_with("attn_v.weight") || p.gguf_name.ends_with("ffn_down.weight")) && more.count(p.layer))
            expect = GgmlType::Q6_K;
        EXPECT_EQ(p.type, expect) << p.gguf_name;
    }
    // Rows that do not fill 256-value super-blocks fall back: q4_K -> q5_0, q6_K -> q8_0, else f16.
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "blk.0.attn_q.weight", {64, 96}, 0, 32, true), GgmlType::Q5_0);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "blk.0.attn_v.weight", {64, 96}, 0, 32, true), GgmlType::Q8_0);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "blk.0.attn_q.weight", {64, 40}, 0, 32, true), GgmlType::F16);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "output.weight", {64, 96}, -1, 32, true), GgmlType::Q8_0);
    // A tied embedding is the output projection.
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "token_embd.weight", {64, 256}, -1, 32, false), GgmlType::Q6_K);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_K_M, "token_embd.weight", {64, 256}, -1, 32, true), GgmlType::Q4_K);
    // q4_0: the output projection gets q6_K (q8_0 when its rows do not fill super-blocks); q8_0 keeps q8_0.
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_0, "output.weight", {64, 256}, -1, 32, true), GgmlType::Q6_K);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_0, "output.weight", {64, 96}, -1, 32, true), GgmlType::Q8_0);
    EXPECT_EQ(choose_tensor_type(ExportType::Q4_0, "blk.3.ffn_down.weight", {64, 96}, 3, 32, true), GgmlType::Q4_0);
    EXPECT_EQ(choose_tensor_type(ExportType::Q8_0, "output.weight", {64, 96}, -1, 32, true), GgmlType::Q8_0);
    EXPECT_EQ(choose_tensor_type(ExportType::Q8_0, "blk.0.attn_norm.weight", {96}, 0, 32, true), GgmlType::F32);
    EXPECT_EQ(choose_tensor_type(ExportType::BF16, "blk.0.attn_q.weight", {64, 40}, 0, 32, true), GgmlType::BF16);
}

TEST(GgufModel, Llama3RopeFactorsAsHuggingFaceScales) {
    // Llama 3.1's settings: factor 8, low 1, high 4, original context 8192, theta 500000, D 128.
    ModelConfig c                                 = llama_config();
    c.head_dim                                    = 128;
    c.rope_theta                                  = 500000.0f;
    c.rope_scaling.llama3                         = true;
    c.rope_scaling.factor                         = 8;
    c.rope_scaling.low_freq_factor                = 1;
    c.rope_scaling.high_freq_factor               = 4;
    c.rope_scaling.original_max_position_embeddings = 8192;
    const std::vector<float> f = llama3_rope_factors(c);
    ASSERT_EQ(f.size(), 64u);
    // wavelength 2π θ^(2i/D): below 8192/4 = 2048 unscaled, above 8192 divided by 8, smooth between.
    for (int i = 0; i < 64; i++) {
        const double wavelen = 2 * std::numbers::pi * std::pow(500000.0, 2.0 * i / 128);
        double       expect;
        if (wavelen < 2048) expect = 1;
        else if (wavelen > 8192) expect = 8;
        else {
            const double smooth = (8192 / wavelen - 1) / (4 - 1);
            expect              = 1 / ((1 - smooth) / 8 + smooth);
        }
        EXPECT_NEAR(f[i], expect, 1e-4 * expect) << i;
    }
    EXPECT_EQ(plan_model_tensors(c, ExportType::F32).back().gguf_name, "rope_freqs.weight");
}

TEST(GgufModel, ExportTypeNames) {
    EXPECT_EQ(parse_export_type("Q4_K_M"), ExportType::Q4_K_M);
    EXPECT_EQ(parse_export_type("bf16"), ExportType::BF16);
    EXPECT_FALSE(parse_export_type("q3_k_s").has_value());
    EXPECT_EQ(llama_file_type(ExportType::Q4_K_M), 15u);
    EXPECT_EQ(llama_file_type(ExportType::Q8_0), 7u);
    EXPECT_EQ(llama_file_type(ExportType::BF16), 32u);
}
