// Weights in their own type (Model::load): a bf16 or f16 model computed in place gives the
// log-probabilities, LoRA gradients and decoder logits of the same weights converted to f32 first
// (same math, other summation order: within 1e-6 relative); an f32 file read in place gives what
// the trainable f32 model gives. Quantized bases (load_in_8bit's Q8_0, load_in_4bit's NF4 and FP4,
// double quantization) hold the codes quantize_bnb4 / quantize_q8_0 give for the file's values,
// and their log-probabilities stay near the f32 model's (the errors are printed). An adapter folded
// into a bf16 model is rounded to bf16 as PEFT's merge on a bf16 model rounds it; adapters applied
// unfused at inference give the folded model's logits. Saving a frozen model writes its values.
// The loading options' errors, and the flags of paft score. The weights copied out of the mapping
// (the default) and read in place (--mmap) give the same bits; PageBuffer holds what it is given.
#include "cli_util.h"
#include "core/backend.h"
#include "core/random.h"
#include "io/fs.h"
#include "model/batch.h"
#include "model/inference.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/transformer.h"
#include "tensor/half.h"
#include "tensor/page_buffer.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

using namespace paft;
namespace fs = std::filesystem;

namespace {

// The tiny preset (hidden 64: whole NF4 and Q8_0 blocks) with 2 layers, as a Qwen2 (q/k/v biases).
ModelConfig test_config() {
    ModelConfig c       = model_preset("tiny");
    c.num_layers        = 2;
    c.architecture      = Architecture::Qwen2;
    c.architecture_name = "Qwen2ForCausalLM";
    c.attention_bias    = true;
    return c;
}

// A random model (biases and norms moved off their initial values) saved as `dtype` in `dir`.
void write_model(const fs::path & dir, DType dtype, const ModelConfig & c = test_config()) {
    auto   model = Model::random(c, 3);
    Random rng(4);
    for (size_t i = 0; i < model->size(); i++) {
        model->data()[i] += 0.02f * rng.normal();
    }
    model->save(dir.string(), dtype);
}

LoraAdapter random_adapter(const ModelConfig & c) {
    LoraConfig lc;
    lc.r     = 4;
    lc.alpha = 8.0f;
    lc.targets.fill(true);
    LoraAdapter adapter(c, lc);
    Random      rng(9);
    for (float & p : adapter.params()) p = 0.1f * rng.normal();
    return adapter;
}

Batch test_batch(int vocab) {
    Random                            rng(21);
    std::vector<std::vector<int32_t>> rows;
    for (int n : {13, 6, 10}) {
        std::vector<int32_t> ids(n);
        for (int32_t & id : ids) id = (int32_t) (rng.next_u64() % vocab);
        rows.push_back(ids);
    }
    return batch_from_rows(rows, nullptr, 0, false, vocab);
}

struct Pass {
    std::vector<float> logp, lora;
};

// logp and the LoRA gradients of a weighted sum of logp, on `model` with `adapter`.
Pass forward_backward(std::shared_ptr<const Model> model, const LoraAdapter & adapter) {
    auto               backend = make_backend(1);
    Transformer        t(*backend, model);
    const Batch        batch = test_batch(model->config().vocab_size);
    std::vector<float> dlogp = mean_nll_gradient(batch);
    Pass               p;
    p.lora.assign(adapter.params().size(), 0.0f);
    p.logp = t.forward_backward(batch, &adapter, dlogp.data(), {p.lora.data(), nullptr});
    return p;
}

// The last position's logits of every prompt, decoded in one pass.
std::vector<float> decoder_logits(const AdaptedModel & model) {
    auto                 backend = make_backend(1);
    Decoder              decoder(*backend, model);
    const Batch          batch = test_batch(model.model->config().vocab_size);
    std::vector<int32_t> ids(batch.input_ids.begin(), batch.input_ids.begin() + 9);
    KvCache              cache(model.model->config(), 16);
    SequenceInput        in;
    in.cache      = &cache;
    in.tokens     = ids;
    in.all_logits = true;
    const float * logits = decoder.forward({&in, 1});
    return std::vector<float>(logits, logits + ids.size() * model.model->config().vocab_size);
}

std::vector<float> matrix_values(const Weight & w) {
    std::vector<float> v((size_t) w.numel());
    dequantize_weight_rows(w, 0, w.rows, v.data());
    return v;
}

}  // namespace

TEST(TypedModel, HalfWeightsInPlaceEqualTheirF32Conversion) {
    const fs::path root = fresh_test_folder("typed");
    for (DType dtype : {DType::BF16, DType::F16}) {
        const fs::path dir = root / dtype_name(dtype);
        write_model(dir, dtype);
        auto in_place = Model::load(dir.string());
        auto as_f32   = Model::load(dir.string(), LoadOptions{TorchDtype::F32});
        const WeightType want = dtype == DType::BF16 ? WeightType::BF16 : WeightType::F16;
        EXPECT_EQ(in_place->weights().layers[1].down.type, want);
        EXPECT_EQ(in_place->weights().embed.type, want);
        EXPECT_EQ(as_f32->weights().layers[1].down.type, WeightType::F32);
        // No f32 copy: 2 bytes a weight (the f32 vectors aside).
        EXPECT_LT((double) in_place->weight_bytes(), 0.55 * (double) as_f32->weight_bytes());

        const LoraAdapter adapter = random_adapter(in_place->config());
        const Pass        a = forward_backward(in_place, adapter), b = forward_backward(as_f32, adapter);
        EXPECT_LE(rel_error(a.logp.data(), b.logp), 1e-6) << dtype_name(dtype);
        EXPECT_LE(rel_error(a.lora.data(), b.lora), 1e-6) << dtype_name(dtype);
        const std::vector<float> la = decoder_logits(in_place), lb = decoder_logits(as_f32);
        EXPECT_LE(rel_error(la.data(), lb), 1e-6) << dtype_name(dtype);
    }
}

// The default load copies the matrices out of the file mapping into huge pages of their own; --mmap
// reads them in place. The same bytes through the same kernels: the same bits.
TEST(TypedModel, CopiedAndMappedWeightsGiveTheSameBits) {
    const fs::path dir = fresh_test_folder("typed-placement");
    write_model(dir, DType::BF16);
    LoadOptions mapped_options;
    mapped_options.mmap = true;
    auto copied = Model::load(dir.string());
    auto mapped = Model::load(dir.string(), mapped_options);
    EXPECT_NE(copied->weights().layers[0].q.data, mapped->weights().layers[0].q.data);
    const LoraAdapter adapter = random_adapter(copied->config());
    const Pass        a = forward_backward(copied, adapter), b = forward_backward(mapped, adapter);
    EXPECT_EQ(a.logp, b.logp);
    EXPECT_EQ(a.lora, b.lora);
    EXPECT_EQ(decoder_logits(copied), decoder_logits(mapped));
}

TEST(PageBuffer, HoldsZerosThenACopyOfItsSource) {
    EXPECT_TRUE(PageBuffer().empty());
    EXPECT_TRUE(PageBuffer(0).empty());
    for (size_t n : {size_t{1}, size_t{4095}, size_t{4097}, (size_t{2} << 20) + 3, size_t{5} << 20}) {
        PageBuffer zeros(n);
        ASSERT_EQ(zeros.size(), n);
        EXPECT_EQ(zeros.data()[0], 0);
        EXPECT_EQ(zeros.data()[n - 1], 0);
        std::vector<uint8_t> src(n);
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t) (i * 131 + i / 4096);
        PageBuffer copy = PageBuffer::copy_of(src.data(), n);
        ASSERT_EQ(copy.size(), n);
        EXPECT_EQ(std::vector<uint8_t>(copy.data(), copy.data() + n), src) << n;
        PageBuffer moved = std::move(copy);
        EXPECT_TRUE(copy.empty());
        EXPECT_EQ(moved.data()[n - 1], src[n - 1]);
    }
}

TEST(TypedModel, F32FileInPlaceEqualsTheTrainableModel) {
    const fs::path dir = fresh_test_folder("typed-f32");
    write_model(dir, DType::F32);
    auto in_place  = Model::load(dir.string());
    auto trainable = Model::load_f32(dir.string());
    EXPECT_FALSE(in_place->trainable());
    EXPECT_TRUE(trainable->trainable());
    EXPECT_THROW(in_place->data(), RuntimeFailure);
    const LoraAdapter adapter = random_adapter(in_place->config());
    const Pass        a = forward_backward(in_place, adapter), b = forward_backward(trainable, adapter);
    // q, k, v are separate products in place and one product in the trainable buffer.
    EXPECT_LE(rel_error(a.logp.data(), b.logp), 1e-6);
    EXPECT_LE(rel_error(a.lora.data(), b.lora), 1e-6);
}

TEST(TypedModel, QuantizedBasesHoldTheQuantizersCodesAndStayClose) {
    const fs::path dir = fresh_test_folder("typed-q");
    write_model(dir, DType::BF16);
    auto       f32     = Model::load(dir.string(), LoadOptions{TorchDtype::F32});
    const auto adapter = random_adapter(f32->config());
    const Pass want    = forward_backward(f32, adapter);
    struct Case {
        const char * name;
        LoadOptions  options;
        WeightType   type;
        double       bound;  // on max |logp - logp_f32|
    };
    const Case cases[] = {
        {"int8", {TorchDtype::Auto, Quantization::Int8, false}, WeightType::Q8_0, 0.02},
        {"nf4", {TorchDtype::Auto, Quantization::NF4, false}, WeightType::NF4, 0.3},
        {"nf4+double", {TorchDtype::Auto, Quantization::NF4, true}, WeightType::NF4, 0.3},
        {"fp4", {TorchDtype::Auto, Quantization::FP4, false}, WeightType::FP4, 0.4},
    };
    for (const Case & c : cases) {
        auto model = Model::load(dir.string(), c.options);
        const LayerWeights & l = model->weights().layers[0];
        for (const Weight * w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
            // Q8_0 blocks run along rows: a row length that is no multiple of 32 keeps its type.
            const bool q8_fits = w->cols % kQ8Block == 0;
            EXPECT_EQ(w->type, c.type != WeightType::Q8_0 || q8_fits ? c.type : WeightType::BF16) << c.name;
        }
        // The embedding and the head are no Linear layers bitsandbytes replaces: as stored.
        EXPECT_EQ(model->weights().embed.type, WeightType::BF16) << c.name;
        EXPECT_EQ(model->weights().lm_head.type, WeightType::BF16) << c.name;
        // The gate weight as the quantizer makes it from the file's values.
        const std::vector<float> file_values = matrix_values(f32->weights().layers[0].gate);
        std::vector<float>       want_values;
        if (c.type == WeightType::Q8_0) {
            want_values = matrix_values(quantize_q8_0(file_values.data(), l.gate.rows, l.gate.cols).weight);
        } else {
            want_values = matrix_values(
                quantize_bnb4(file_values.data(), l.gate.rows, l.gate.cols, c.type, c.options.double_quant).weight);
        }
        const std::vector<float> got_values = matrix_values(l.gate);
        EXPECT_EQ(std::memcmp(got_values.data(), want_values.data(), got_values.size() * sizeof(float)), 0) << c.name;
        EXPECT_EQ(l.gate.absmax_q != nullptr, c.options.double_quant) << c.name;

        const Pass got = forward_backward(model, adapter);
        double     max_err = 0, sum_err = 0;
        int        n = 0;
        for (size_t i = 0; i < got.logp.size(); i++) {
            if (want.logp[i] == 0.0f) continue;
            const double e = std::fabs(got.logp[i] - want.logp[i]);
            max_err        = std::max(max_err, e);
            sum_err += e;
            n++;
        }
        std::printf("%-10s log-probability error against f32: mean %.4f, max %.4f (nats), weights %.2f MB\n", c.name,
                    sum_err / n, max_err, model->weight_bytes() / 1e6);
        EXPECT_LE(max_err, c.bound) << c.name;
        EXPECT_GT(max_err, 0.0) << c.name << ": quantization changed nothing: the test would prove nothing";
        EXPECT_LE(rel_error(got.lora.data(), want.lora), 0.5) << c.name;
    }
}

TEST(TypedModel, FoldingIntoBf16RoundsOncePerWeight) {
    const fs::path dir = fresh_test_folder("typed-fold");
    write_model(dir, DType::BF16);
    auto              model   = Model::load(dir.string());
    const LoraAdapter adapter = random_adapter(model->config());
    const std::vector<float> before = matrix_values(model->weights().layers[1].up);
    const size_t             bytes  = model->weight_bytes();
    fold_lora_adapter(*model, adapter, 0.5);
    EXPECT_EQ(model->weight_bytes(), bytes);
    const Weight & up = model->weights().layers[1].up;
    ASSERT_EQ(up.type, WeightType::BF16);
    const std::vector<float> after = matrix_values(up);
    // The oracle: W + 0.5 s B A in double, rounded to bf16 once. The f32 sum may round the other
    // way at a tie of the two; allow that for a few entries, one bf16 step at most.
    const float s = adapter.config().scale();
    const int   r = adapter.config().r, in = (int) up.cols;
    int         exact = 0;
    for (int64_t i = 0; i < up.rows; i++) {
        for (int j = 0; j < in; j++) {
            double delta = 0;
            for (int k = 0; k < r; k++) {
                delta += (double) adapter.B(1, TARGET_UP)[i * r + k] * adapter.A(1, TARGET_UP)[(size_t) k * in + j];
            }
            const float want = bf16_to_f32(f32_to_bf16((float) (before[i * in + j] + 0.5 * s * delta)));
            const float got  = after[i * in + j];
            exact += got == want;
            EXPECT_LE(std::fabs(got - want), std::fabs(want) / 128 + 1e-30) << i << "," << j;
        }
    }
    EXPECT_GE(exact, (int) (0.99 * up.numel()));
}

TEST(TypedModel, UnfusedAdaptersGiveTheFoldedLogits) {
    const fs::path dir = fresh_test_folder("typed-unfused");
    write_model(dir, DType::F32);
    auto              frozen = Model::load(dir.string());
    const LoraAdapter one    = random_adapter(frozen->config());
    LoraAdapter       two    = random_adapter(frozen->config());
    for (float & p : two.params()) p *= -0.5f;
    auto folded = Model::load_f32(dir.string());
    fold_lora_adapter(*folded, one);
    fold_lora_adapter(*folded, two);
    const AdaptedModel unfused{frozen, {std::make_shared<const LoraAdapter>(one), std::make_shared<const LoraAdapter>(two)}};
    const std::vector<float> got = decoder_logits(unfused), want = decoder_logits(AdaptedModel{folded});
    EXPECT_LE(rel_error(got.data(), want), 1e-5);
    const std::vector<float> base = decoder_logits(AdaptedModel{frozen});
    EXPECT_GT(rel_error(base.data(), want), 1e-3) << "the adapters change nothing: the test would prove nothing";
}

TEST(TypedModel, SavingAFrozenModelWritesItsValues) {
    const fs::path root = fresh_test_folder("typed-save");
    write_model(root / "bf16", DType::BF16);
    // bf16 in place, saved as bf16: the same tensors, byte for byte.
    auto model = Model::load((root / "bf16").string());
    model->save((root / "again").string(), DType::BF16);
    const TensorStore a = TensorStore::open_dir((root / "bf16").string()), b = TensorStore::open_dir((root / "again").string());
    ASSERT_EQ(a.names(), b.names());
    for (const std::string & name : a.names()) {
        const auto x = a.bytes(name), y = b.bytes(name);
        ASSERT_EQ(x.size(), y.size()) << name;
        EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
    }
    // NF4, saved as f32: its dequantized values.
    auto nf4 = Model::load((root / "bf16").string(), LoadOptions{TorchDtype::Auto, Quantization::NF4, true});
    nf4->save((root / "nf4").string(), DType::F32);
    auto back = Model::load((root / "nf4").string());
    EXPECT_EQ(back->weights().layers[0].v.type, WeightType::F32);
    const std::vector<float> want = matrix_values(nf4->weights().layers[0].v), got = matrix_values(back->weights().layers[0].v);
    EXPECT_EQ(got, want);
}

TEST(TypedModel, LoadingOptionErrors) {
    expect_input_error([] { model_load_options("float64", false, false, "nf4", false); }, {"torch_dtype", "float64"});
    expect_input_error([] { model_load_options("auto", true, true, "nf4", false); }, {"load_in_8bit", "load_in_4bit"});
    expect_input_error([] { model_load_options("auto", false, true, "int4", false); }, {"bnb_4bit_quant_type", "int4"});
}

TEST(TypedModel, ScoreTakesTheLoadingFlags) {
    const fs::path dir = fresh_test_folder("typed-cli");
    write_model(dir / "model", DType::BF16);
    spit(dir / "data.jsonl", "{\"input_ids\": [1, 5, 9, 2, 7, 7, 3]}\n");
    const RunResult plain = run_paft({"score", "--model", (dir / "model").string(), "--data", (dir / "data.jsonl").string()}, dir);
    ASSERT_EQ(plain.code, 0) << describe(plain);
    const RunResult nf4 = run_paft({"score", "--model", (dir / "model").string(), "--data", (dir / "data.jsonl").string(),
                                    "--load-in-4bit", "--bnb-4bit-use-double-quant"},
                                   dir);
    ASSERT_EQ(nf4.code, 0) << describe(nf4);
    const double lp_plain = json_lines(plain.out).at(0).at("logprob"), lp_nf4 = json_lines(nf4.out).at(0).at("logprob");
    EXPECT_NE(lp_plain, lp_nf4);
    EXPECT_NEAR(lp_plain, lp_nf4, 1.0);
    const RunResult mapped = run_paft({"score", "--model", (dir / "model").string(), "--data", (dir / "data.jsonl").string(),
                                       "--mmap"},
                                      dir);
    ASSERT_EQ(mapped.code, 0) << describe(mapped);
    EXPECT_EQ(mapped.out, plain.out);
    expect_input_error(run_paft({"score", "--model", (dir / "model").string(), "--data", (dir / "data.jsonl").string(),
                                 "--load-in-4bit", "--load-in-8bit"},
                                dir),
                       {"--load-in-8bit", "--load-in-4bit"});
    expect_input_error(run_paft({"score", "--model", (dir / "model").string(), "--data", (dir / "data.jsonl").string(),
                                 "--torch-dtype", "float64"},
                                dir),
                       {"--torch-dtype", "float64"});
}
