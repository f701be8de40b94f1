#include "gguf/export.h"

#include "core/error.h"
#include "core/progress.h"
#include "gguf/gguf_vocab.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

namespace paft {

namespace {

namespace fs = std::filesystem;

// Floats converted per block of rows: a few MB of working memory whatever the model's size.
constexpr int64_t kBlockValues = 1 << 22;

bool is_inside(const fs::path & path, const fs::path & folder) {
    std::error_code ec;
    const fs::path  a = fs::weakly_canonical(path, ec), b = fs::weakly_canonical(folder, ec);
    auto            it = std::mismatch(b.begin(), b.end(), a.begin(), a.end());
    return it.first == b.end();
}

void check_output(const GgufExportOptions & o, const std::vector<std::string> & inputs) {
    if (o.out.empty()) throw InputError("--out: give the .gguf file to write");
    const fs::path out(o.out);
    for (const std::string & in : inputs) {
        if (is_inside(out, in)) {
            throw InputError(fmt::format("--out: {} lies inside the input folder {}; write the GGUF file elsewhere", o.out, in));
        }
    }
    std::error_code ec;
    if (fs::is_directory(out, ec)) throw InputError(fmt::format("--out: {} is a folder; give a file name", o.out));
    if (fs::exists(out, ec) && !o.overwrite) {
        throw InputError(fmt::format("--out: {} exists (add --overwrite to replace it)", o.out));
    }
    const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    if (!fs::is_directory(parent, ec)) throw InputError(fmt::format("--out: folder {} does not exist", parent.string()));
}

// Rows [row0, row0 + rows) of a stored F32/F16/BF16 tensor as f32.
void read_rows(std::span<const uint8_t> bytes, DType dtype, int64_t row0, int64_t rows, int64_t n, float * dst) {
    const size_t  size  = dtype_size(dtype);
    const uint8_t * src = bytes.data() + (size_t) (row0 * n) * size;
    const int64_t count = rows * n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        const uint8_t * p = src + (size_t) i * size;
        uint16_t        h;
        switch (dtype) {
            case DType::F32: std::memcpy(&dst[i], p, 4); break;
            case DType::F16: std::memcpy(&h, p, 2); dst[i] = f16_to_f32(h); break;
            case DType::BF16: std::memcpy(&h, p, 2); dst[i] = bf16_to_f32(h); break;
            case DType::F64: {
                double d;
                std::memcpy(&d, p, 8);
                dst[i] = (float) d;
                break;
            }
            default: break;  // check_model_tensors has accepted float tensors only
        }
    }
}

void check_finite(const float * v, int64_t count, const std::string & name, const std::string & source) {
    for (int64_t i = 0; i < count; i++) {
        if (!std::isfinite(v[i])) {
            throw InputError(fmt::format("{}: tensor {} holds a non-finite value ({}) at index {}", source, name, v[i], i));
        }
    }
}

// Rows of f32 into `type`, split across the threads by rows (each row's bytes depend on that row
// only, so the file is the same whatever the thread count).
void quantize_block(GgmlType type, const float * src, int64_t rows, int64_t n, std::vector<uint8_t> & out) {
    const size_t row_bytes = ggml_row_bytes(type, n);
    out.resize(row_bytes * (size_t) rows);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) quantize_rows(type, src + r * n, 1, n, out.data() + (size_t) r * row_bytes);
}

std::string default_name(const std::string & dir) {
    const fs::path p = fs::path(dir).lexically_normal();
    const std::string name = (p.filename().empty() ? p.parent_path().filename() : p.filename()).string();
    return name.empty() ? "model" : name;
}

ExportType own_type(const TensorStore & store, const std::string & dir) {
    switch (store.info("model.embed_tokens.weight").dtype) {
        case DType::F16: return ExportType::F16;
        case DType::BF16: return ExportType::BF16;
        case DType::F32: return ExportType::F32;
        default: throw InputError(fmt::format("{}: model.embed_tokens.weight is not F32, F16 or BF16", dir));
    }
}

struct Stopwatch {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};

GgufExportReport export_model(const GgufExportOptions & o) {
    Stopwatch         clock;
    const ModelConfig config = load_model_config(o.model_dir);
    const TensorStore store  = TensorStore::open_dir(o.model_dir);
    check_model_tensors(o.model_dir, config, store);
    std::vector<LoraAdapter> adapters;
    for (const std::string & dir : o.adapters) adapters.push_back(LoraAdapter::load(dir, config));
    std::vector<std::string> inputs = {o.model_dir};
    inputs.insert(inputs.end(), o.adapters.begin(), o.adapters.end());
    check_output(o, inputs);

    const ParamLayout layout(config);
    for (const ParamEntry & e : layout.entries()) {
        const DType d = store.info(e.name).dtype;
        if (d != DType::F32 && d != DType::F16 && d != DType::BF16 && d != DType::F64) {
            throw InputError(fmt::format("{}: tensor {} is {}, not a float type", o.model_dir, e.name, dtype_name(d)));
        }
    }
    const ExportType type = o.type ? *o.type : own_type(store, o.model_dir);
    GgufWriter       w;
    write_model_metadata(w, config, o.name.empty() ? default_name(o.model_dir) : o.name, type);
    const std::vector<std::string> vocab_notes = write_vocab_metadata(w, o.model_dir, config);
    const std::vector<GgufTensorPlan> plan = plan_model_tensors(config, type);
    for (const GgufTensorPlan & p : plan) w.add_tensor(p.gguf_name, p.shape, p.type);

    GgufExportReport report;
    report.type    = export_type_name(type);
    report.tensors = plan.size();
    for (const GgufTensorPlan & p : plan) report.types[ggml_type_name(p.type)]++;
    report.notes = vocab_notes;
    if (gguf_context_length(config) < config.max_position_embeddings) {
        report.notes.push_back(fmt::format(
            "llama.cpp has no sliding-window attention for this architecture: the file's context length is the "
            "window, {} tokens (of max_position_embeddings {}); longer contexts would attend beyond the window",
            config.sliding_window, config.max_position_embeddings));
    }

    const int threads = o.threads > 0 ? o.threads : std::max(1, (int) std::thread::hardware_concurrency());
    const int saved_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::unique_ptr<Progress> progress;
    if (o.progress) progress = std::make_unique<Progress>("export " + report.type, std::max<long>(1, (long) (w.data_bytes() >> 20)), "MB");
    uint64_t             done = 0;
    std::vector<float>   values;
    std::vector<uint8_t> bytes;
    try {
        w.write(o.out, [&](size_t index, const GgufWriter::WriteBytes & write) {
            const GgufTensorPlan & p = plan[index];
            if (p.hf_name.empty()) {  // rope_freqs: computed from the configuration
                const std::vector<float> factors = llama3_rope_factors(config);
                write(factors.data(), factors.size() * sizeof(float));
                return;
            }
            const TensorInfo & info = store.info(p.hf_name);
            const std::span<const uint8_t> stored = store.bytes(p.hf_name);
            const int64_t n = p.shape.size() > 1 ? p.shape[1] : p.shape[0], total_rows = p.shape.size() > 1 ? p.shape[0] : 1;
            // q and k are reordered within heads: one block holds the whole tensor (q_proj in f32: 64 MB
            // at 7B).
            const int64_t block = p.rope_heads > 0 ? total_rows : std::max<int64_t>(1, kBlockValues / n);
            for (int64_t row0 = 0; row0 < total_rows; row0 += block) {
                const int64_t rows = std::min(block, total_rows - row0);
                values.resize((size_t) (rows * n));
                read_rows(stored, info.dtype, row0, rows, n, values.data());
                if (p.target >= 0) {
                    for (const LoraAdapter & a : adapters) {
                        if (a.has(p.layer, p.target)) add_lora_delta_rows(a, p.layer, p.target, 1.0f, 1.0f, row0, rows, values.data());
                    }
                }
                if (p.rope_heads > 0) permute_rope_rows(values.data(), p.rope_heads, config.head_dim, p.shape.size() > 1 ? n : 1);
                check_finite(values.data(), rows * n, p.hf_name, o.model_dir);
                quantize_block(p.type, values.data(), rows, n, bytes);
                write(bytes.data(), bytes.size());
                done += bytes.size();
                if (progress) progress->update((long) (done >> 20));
            }
            store.release(p.hf_name);
        });
    } catch (...) {
        omp_set_num_threads(saved_threads);
        throw;
    }
    omp_set_num_threads(saved_threads);
    if (progress) progress->finish();
    report.bytes   = fs::file_size(o.out);
    report.seconds = clock.seconds();
    return report;
}

GgufExportReport export_adapter(const GgufExportOptions & o) {
    Stopwatch clock;
    if (o.adapters.size() != 1) {
        throw InputError(fmt::format("--adapter-only: give exactly one --adapter (got {})", o.adapters.size()));
    }
    const ExportType type = o.type.value_or(ExportType::F32);
    if (type != ExportType::F32 && type != ExportType::F16 && type != ExportType::BF16) {
        throw InputError(fmt::format("--type {}: a LoRA adapter file is written as f32, f16 or bf16", export_type_name(type)));
    }
    const ModelConfig config  = load_model_config(o.model_dir);
    const LoraAdapter adapter = LoraAdapter::load(o.adapters[0], config);
    check_output(o, {o.model_dir, o.adapters[0]});

    const LoraConfig & lc = adapter.config();
    GgufWriter         w;
    w.set_string("general.architecture", gguf_architecture(config));
    w.set_string("general.type", "adapter");
    w.set_string("general.name", o.name.empty() ? default_name(o.adapters[0]) : o.name);
    w.set_string("adapter.type", "lora");
    // llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is the same with alpha * sqrt(r).
    w.set_f32("adapter.lora.alpha", lc.rslora ? lc.alpha * std::sqrt((float) lc.r) : lc.alpha);

    struct Item {
        int  layer, target;
        char which;  // 'a' or 'b'
    };
    std::vector<Item> items;
    const std::vector<GgufTensorPlan> model_plan = plan_model_tensors(config, ExportType::F32);
    std::map<std::pair<int, int>, const GgufTensorPlan *> module;
    for (const GgufTensorPlan & p : model_plan) {
        if (p.target >= 0) module[{p.layer, p.target}] = &p;
    }
    for (int l = 0; l < adapter.layers(); l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!adapter.has(l, t)) continue;
            const std::string base = module.at({l, t})->gguf_name;
            const GgmlType    gt   = type == ExportType::F16 ? GgmlType::F16 : type == ExportType::BF16 ? GgmlType::BF16 : GgmlType::F32;
            w.add_tensor(base + ".lora_a", {lc.r, adapter.in_features(t)}, gt);
            w.add_tensor(base + ".lora_b", {adapter.out_features(t), lc.r}, gt);
            items.push_back({l, t, 'a'});
            items.push_back({l, t, 'b'});
        }
    }
    if (items.empty()) throw InputError(fmt::format("{}: the adapter targets no module", o.adapters[0]));
    GgufExportReport report;
    report.type    = "lora";
    report.tensors = items.size();
    for (const GgufTensorInfo & t : w.tensors()) report.types[ggml_type_name(t.type)]++;
    std::vector<float>   values;
    std::vector<uint8_t> bytes;
    w.write(o.out, [&](size_t index, const GgufWriter::WriteBytes & write) {
        const Item &    it   = items[index];
        const int64_t   rows = it.which == 'a' ? lc.r : adapter.out_features(it.target);
        const int64_t   n    = it.which == 'a' ? adapter.in_features(it.target) : lc.r;
        const float *   src  = it.which == 'a' ? adapter.A(it.layer, it.target) : adapter.B(it.layer, it.target);
        values.assign(src, src + rows * n);
        const GgufTensorPlan & p = *module.at({it.layer, it.target});
        if (it.which == 'b' && p.rope_heads > 0) permute_rope_rows(values.data(), p.rope_heads, config.head_dim, n);
        check_finite(values.data(), rows * n, w.tensors()[index].name, o.adapters[0]);
        quantize_block(w.tensors()[index].type, values.data(), rows, n, bytes);
        write(bytes.data(), bytes.size());
    });
    report.bytes   = fs::file_size(o.out);
    report.seconds = clock.seconds();
    return report;
}

}  // namespace

GgufExportReport export_gguf(const GgufExportOptions & o) {
    if (o.model_dir.empty()) throw InputError("--model: give the model folder");
    return o.adapter_only ? export_adapter(o) : export_model(o);
}

}  // namespace paft
