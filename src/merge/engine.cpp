// The merge engine: checks a MergeConfig against the files it names, plans every output tensor
// (its parameters evaluated for that tensor), then streams the tensors through a pool of workers
// into a temporary directory that becomes the output when everything is written.
//
// Data flow of one tensor (one job, one worker):
//   base tensor (f32) + for each model: its own tensor (f32) or, for an adapter over the base,
//   only s * B * A  ->  deltas  ->  merge_tensor  ->  writer (narrowed to the output dtype, written
//   in place in its shard)  or  (lora output) merged - base -> truncated SVD -> adapter.
// A worker holds a few tensors at a time; a memory budget keeps the workers together under a
// limit, so peak memory follows the largest tensors, not the model.
#include "io/json_depth.h"
#include "merge/config.h"

#include "core/error.h"
#include "core/progress.h"
#include "io/fs.h"
#include "io/nonfinite.h"
#include "io/output_lock.h"
#include "io/staged_folder.h"
#include "io/safetensors.h"
#include "merge/lora_extract.h"
#include "merge/model_topk.h"
#include "model/config.h"
#include "model/lora.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace paft {
namespace {

namespace fs = std::filesystem;
using json   = nlohmann::json;

// ---- Inputs ----------------------------------------------------------------------------------

// One model of the merge, opened.
struct Input {
    ModelRef                     ref;
    bool                         on_base = false;  // its model directory is the merge's base: only the adapter changes it
    ModelConfig                  config;
    std::unique_ptr<TensorStore> store;  // its own tensors (null when on_base)
    std::unique_ptr<LoraAdapter> adapter;
    std::map<std::string, std::pair<int, int>> targets;  // HF weight name -> (layer, LoRA target)
};

bool same_dir(const std::string & a, const std::string & b) {
    std::error_code ec1, ec2;
    const fs::path  ca = fs::weakly_canonical(a, ec1), cb = fs::weakly_canonical(b, ec2);
    return !ec1 && !ec2 && ca == cb;
}

void expect_dir(const std::string & path, const std::string & what) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        throw InputError(fmt::format("{}: {} is not a directory (paft reads local Hugging Face / PEFT "
                                     "directories)",
                                     what, path));
    }
}

ModelConfig read_config(const std::string & dir, const std::string & what) {
    expect_dir(dir, what);
    if (!path_exists(fs::path(dir) / "config.json")) {
        throw InputError(fmt::format("{}: {} has no config.json (not a Hugging Face model directory)", what, dir));
    }
    return load_model_config(dir);
}

// The shapes that decide whether two models can be merged entry by entry.
void check_same_architecture(const ModelConfig & ref, const std::string & ref_name, const ModelConfig & c,
                             const std::string & name) {
    const std::pair<const char *, std::pair<long, long>> fields[] = {
        {"hidden_size", {ref.hidden_size, c.hidden_size}},
        {"intermediate_size", {ref.intermediate_size, c.intermediate_size}},
        {"num_hidden_layers", {ref.num_layers, c.num_layers}},
        {"num_attention_heads", {ref.num_heads, c.num_heads}},
        {"num_key_value_heads", {ref.num_kv_heads, c.num_kv_heads}},
        {"vocab_size", {ref.vocab_size, c.vocab_size}},
    };
    if (ref.architecture_name != c.architecture_name) {
        throw InputError(fmt::format("{}: architecture {} differs from {}'s {}", name, c.architecture_name, ref_name,
                                     ref.architecture_name));
    }
    for (const auto & [field, values] : fields) {
        if (values.first != values.second) {
            throw InputError(fmt::format("{}: config.json {} = {} differs from {}'s {}", name, field, values.second,
                                         ref_name, values.first));
        }
    }
}

Input open_input(const ModelRef & ref, const std::optional<ModelRef> & base, const std::string & what) {
    Input in;
    in.ref     = ref;
    in.on_base = base && base->adapter.empty() && same_dir(ref.model, base->model);
    in.config  = read_config(ref.model, what);
    if (!in.on_base) {
        in.store = std::make_unique<TensorStore>(TensorStore::open_dir(ref.model));
    }
    if (!ref.adapter.empty()) {
        expect_dir(ref.adapter, what);
        if (!path_exists(fs::path(ref.adapter) / "adapter_config.json")) {
            throw InputError(fmt::format("{}: {} has no adapter_config.json (not a PEFT adapter directory)", what,
                                         ref.adapter));
        }
        in.adapter = std::make_unique<LoraAdapter>(LoraAdapter::load(ref.adapter, in.config));
        for (int l = 0; l < in.adapter->layers(); l++) {
            for (int t = 0; t < TARGET_COUNT; t++) {
                if (in.adapter->has(l, t)) {
                    in.targets[lora_module_path(l, t) + ".weight"] = {l, t};
                }
            }
        }
    }
    return in;
}

// ---- The plan --------------------------------------------------------------------------------

struct TensorJob {
    std::string          name;
    std::vector<int64_t> shape;
    size_t               n = 0, rows = 1, cols = 0;
    DType                stored = DType::F32;  // in the reference model
    DType                out    = DType::F32;
    double               t      = 0;  // position for gradients
    bool                 changed = true;  // some model may differ from the base here
    TensorParams         params;
    uint64_t             work_bytes = 0;  // buffers the job holds while it runs
};

struct Plan {
    const MergeMethodDef *    method = nullptr;
    std::optional<ModelRef>   base;
    std::unique_ptr<Input>       base_input;  // the base's adapter (base_model: MODEL+ADAPTER), if any
    ModelConfig               base_config;
    std::unique_ptr<TensorStore> base_store;  // the reference model's tensors (the base, or the first model)
    std::vector<Input>        inputs;
    std::vector<TensorJob>    jobs;
    std::string               tokenizer_dir, config_dir;
};

// Layer position for gradient parameters, as mergekit's planner sets it: layer l of L at
// l / (L - 1) (1 when L == 1); tensors before the layers (embeddings) at 0, after them at 1.
double layer_position(const std::string & name, int layers) {
    const std::string prefix = "model.layers.";
    if (name.rfind(prefix, 0) == 0) {
        const int l = std::atoi(name.c_str() + prefix.size());
        return layers > 1 ? (double) l / (double) (layers - 1) : 1.0;
    }
    return name.find("embed") != std::string::npos ? 0.0 : 1.0;
}

// Hugging Face order: embeddings, layers in order (names sorted within a layer), the rest.
std::vector<std::string> output_order(std::vector<std::string> names) {
    auto key = [](const std::string & n) {
        const std::string prefix = "model.layers.";
        if (n.rfind(prefix, 0) == 0) {
            return std::make_pair(1 + std::atoi(n.c_str() + prefix.size()), n);
        }
        return std::make_pair(n.find("embed") != std::string::npos ? 0 : 1 << 30, n);
    };
    std::sort(names.begin(), names.end(), [&](const std::string & a, const std::string & b) { return key(a) < key(b); });
    return names;
}

std::optional<DType> parse_out_dtype(const std::string & name) {
    if (name == "bfloat16" || name == "bf16") return DType::BF16;
    if (name == "float16" || name == "fp16" || name == "f16" || name == "half") return DType::F16;
    if (name == "float32" || name == "fp32" || name == "f32" || name == "float") return DType::F32;
    return std::nullopt;
}

const char * torch_dtype_name(DType d) {
    return d == DType::BF16 ? "bfloat16" : d == DType::F16 ? "float16" : "float32";
}

// Every parameter the config sets must be one the method takes, at the right level.
void check_parameter_names(const MergeConfig & c, const MergeMethodDef & m) {
    for (const auto & [name, setting] : c.parameters) {
        check_param_name(m, name, false, setting.where);
    }
    for (const MergeInputModel & model : c.models) {
        for (const auto & [name, setting] : model.parameters) {
            check_param_name(m, name, true, setting.where);
        }
    }
}

std::vector<const MergeInputModel *> models_to_merge(const MergeConfig & c, const MergeMethodDef & m) {
    std::vector<const MergeInputModel *> models;
    for (const MergeInputModel & model : c.models) {
        // mergekit lists the base among the models; methods with a base merge into it, not it.
        const bool is_base = m.base != BaseUse::unused && c.base && same_dir(model.ref.model, c.base->model) &&
                             (model.ref.adapter.empty() ? c.base->adapter.empty()
                                                        : !c.base->adapter.empty() &&
                                                              same_dir(model.ref.adapter, c.base->adapter));
        if (!is_base) {
            models.push_back(&model);
        }
    }
    return models;
}

// Bytes of f32 buffers a job holds: the base, per model its tensor or delta and a sparsified
// copy, the output and one work buffer.
uint64_t job_bytes(size_t n, size_t models, bool changed) {
    return changed ? (uint64_t) n * sizeof(float) * (1 + 2 * models + 2) : (uint64_t) n * sizeof(float);
}

const MergeMethodDef & method_of(const MergeConfig & c) {
    const MergeMethodDef * m = find_merge_method(c.method);
    if (!m) {
        throw InputError(fmt::format("{}merge_method: unknown method '{}' (known: {})",
                                     c.source.empty() ? "" : c.source + ": ", c.method, merge_method_list()));
    }
    if (m->base == BaseUse::required && !c.base) {
        throw InputError(fmt::format("base_model: {} needs a base model", m->name));
    }
    return *m;
}

// The configured value of a parameter for one tensor: the model's setting, else the global one.
ParamLookup config_lookup(const MergeConfig & c, const std::vector<const MergeInputModel *> & models,
                          const std::string & tensor, double t) {
    return [&c, &models, tensor, t](const std::string & name, int model) -> std::optional<ParamScalar> {
        if (model >= 0) {
            const auto it = models[model]->parameters.find(name);
            if (it != models[model]->parameters.end()) {
                if (auto v = evaluate_setting(it->second, tensor, t)) return v;
            }
        }
        const auto it = c.parameters.find(name);
        return it == c.parameters.end() ? std::nullopt : evaluate_setting(it->second, tensor, t);
    };
}

// The method, its parameters' names and scopes, and the number of models; the models to merge.
std::vector<const MergeInputModel *> check_structure(const MergeConfig & c) {
    const MergeMethodDef & m = method_of(c);
    check_parameter_names(c, m);
    std::vector<const MergeInputModel *> models = models_to_merge(c, m);
    if (models.size() < m.min_models || models.size() > m.max_models) {
        throw InputError(fmt::format("models: {} merges {} model{} besides the base; the config gives {}", m.name,
                                     m.min_models == m.max_models ? std::to_string(m.min_models)
                                     : m.max_models > 1000    ? fmt::format("at least {}", m.min_models)
                                                              : fmt::format("{} to {}", m.min_models, m.max_models),
                                     m.max_models == 1 ? "" : "s", models.size()));
    }
    return models;
}

}  // namespace

void check_merge_parameters(const MergeConfig & c) {
    const std::vector<const MergeInputModel *> models = check_structure(c);
    // Values at a nominal tensor (a merge resolves them at every real tensor instead).
    resolve_tensor_params(method_of(c), models.size(), config_lookup(c, models, "", 0.0), "(any tensor)");
}

namespace {

Plan make_plan(const MergeConfig & c, const MergeRunOptions & o) {
    const std::vector<const MergeInputModel *> models = check_structure(c);
    Plan plan;
    plan.method              = &method_of(c);
    const MergeMethodDef & m = *plan.method;
    if (o.format == OutFormat::lora && (!c.base || m.base == BaseUse::unused)) {
        throw InputError("--out-format lora: the merged delta is taken against the base model; give base_model");
    }

    // Open everything and check it fits together before any work.
    const bool use_base = c.base && m.base != BaseUse::unused;
    if (c.base) {
        plan.base_config = read_config(c.base->model, "base_model");
        if (use_base) {
            plan.base = c.base;
        }
    }
    if (plan.base && !plan.base->adapter.empty()) {
        if (o.format == OutFormat::lora) {
            throw InputError("--out-format lora: the adapter would hold a delta against base_model " +
                             plan.base->text() + ", which is not a model directory");
        }
        plan.base_input = std::make_unique<Input>(open_input(*plan.base, std::nullopt, "base_model"));
    }
    for (size_t i = 0; i < models.size(); i++) {
        plan.inputs.push_back(open_input(models[i]->ref, plan.base, fmt::format("models[{}]", i)));
    }
    const std::string ref_dir  = c.base ? c.base->model : models[0]->ref.model;
    const std::string ref_name = c.base ? "base_model" : "models[0]";
    const ModelConfig ref_config = c.base ? plan.base_config : plan.inputs[0].config;
    plan.base_store              = std::make_unique<TensorStore>(TensorStore::open_dir(ref_dir));
    const std::vector<std::string> names = output_order(plan.base_store->names());
    for (size_t i = 0; i < plan.inputs.size(); i++) {
        const Input &     in   = plan.inputs[i];
        const std::string what = fmt::format("models[{}] ({})", i, in.ref.text());
        check_same_architecture(ref_config, ref_name, in.config, what);
        if (in.store) {
            for (const std::string & name : names) {
                if (!in.store->has(name)) {
                    throw InputError(fmt::format("{}: has no tensor '{}', which {} has", what, name, ref_name));
                }
                if (in.store->info(name).shape != plan.base_store->info(name).shape) {
                    in.store->expect_shape(name, plan.base_store->info(name).shape);  // throws, naming both shapes
                }
            }
            if (in.store->names().size() != names.size()) {
                for (const std::string & name : in.store->names()) {
                    if (!plan.base_store->has(name)) {
                        throw InputError(fmt::format("{}: has tensor '{}', which {} has not", what, name, ref_name));
                    }
                }
            }
        }
        for (const auto & [name, module] : in.targets) {
            if (!plan.base_store->has(name)) {
                throw InputError(fmt::format("{}: the adapter targets {}, which {} has not", what, name, ref_name));
            }
        }
    }

    // Output dtype: out_dtype, else dtype (mergekit's output ends up in it), else as stored.
    std::optional<DType> out_dtype;
    for (const auto & [field, value] : {std::pair{"out_dtype", c.out_dtype}, {"dtype", c.dtype}}) {
        if (!value.empty() && !out_dtype) {
            out_dtype = parse_out_dtype(value);
            if (!out_dtype) {
                throw InputError(fmt::format("{}: unknown dtype '{}' (bfloat16, float16, float32)", field, value));
            }
        }
    }

    // Every tensor's parameters, evaluated and checked now rather than halfway through.
    for (const std::string & name : names) {
        TensorJob         job;
        const TensorInfo & info = plan.base_store->info(name);
        job.name   = name;
        job.shape  = info.shape;
        job.n      = (size_t) info.numel();
        job.rows   = info.shape.size() >= 2 ? (size_t) info.shape[0] : 1;
        job.cols   = job.rows ? job.n / job.rows : 0;
        job.stored = info.dtype;
        if (info.dtype != DType::F32 && info.dtype != DType::F16 && info.dtype != DType::BF16) {
            throw InputError(fmt::format("{}: tensor '{}' has dtype {}; paft merges F32, F16 and BF16 tensors", ref_dir,
                                         name, dtype_name(info.dtype)));
        }
        job.out     = out_dtype ? *out_dtype : info.dtype;
        job.t       = layer_position(name, ref_config.num_layers);
        job.changed = !use_base || (plan.base_input && plan.base_input->targets.count(name)) ||
                      std::any_of(plan.inputs.begin(), plan.inputs.end(),
                                  [&](const Input & in) { return !in.on_base || in.targets.count(name); });
        job.params      = resolve_tensor_params(m, plan.inputs.size(), config_lookup(c, models, name, job.t), name);
        job.params.seed = o.seed;
        job.work_bytes  = job_bytes(job.n, plan.inputs.size(), job.changed);
        plan.jobs.push_back(std::move(job));
    }

    plan.config_dir    = ref_dir;
    plan.tokenizer_dir = c.tokenizer_source.empty() || c.tokenizer_source == "base" ? ref_dir : c.tokenizer_source;
    expect_dir(plan.tokenizer_dir, "tokenizer_source");
    return plan;
}

// ---- Running ---------------------------------------------------------------------------------

// Bytes of working buffers in use across workers. A job waits until its bytes fit under the
// limit; a job larger than the limit runs when nothing else does.
class MemoryBudget {
public:
    explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
    void acquire(uint64_t bytes) {
        std::unique_lock<std::mutex> lock(mutex_);
        freed_.wait(lock, [&] { return used_ == 0 || used_ + bytes <= limit_; });
        used_ += bytes;
    }
    void release(uint64_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            used_ -= bytes;
        }
        freed_.notify_all();
    }

private:
    uint64_t                limit_, used_ = 0;
    std::mutex              mutex_;
    std::condition_variable freed_;
};

struct Worker {
    std::vector<float>              base, out;
    std::vector<std::vector<float>> tensors;  // per model: its tensor or delta
    MergeScratch                    scratch;
};

// Model i's tensor of `job` into buf: with a base, its delta against `base` (null when it has
// none); without one, the model's own tensor.
const float * read_model(const Plan & plan, const TensorJob & job, size_t i, const float * base,
                         std::vector<float> & buf) {
    const Input & src    = plan.inputs[i];
    const auto    target = src.targets.find(job.name);
    if (src.on_base) {
        if (target == src.targets.end()) {
            return nullptr;
        }
        buf.resize(job.n);
        add_lora_delta(*src.adapter, target->second.first, target->second.second, 1.0f, 0.0f, buf.data());
        return buf.data();
    }
    buf.resize(job.n);
    src.store->read_f32(job.name, job.shape, buf.data());
    src.store->release(job.name);
    if (target != src.targets.end()) {
        add_lora_delta(*src.adapter, target->second.first, target->second.second, 1.0f, 1.0f, buf.data());
    }
    if (base) {
        // delta = model - base, in place (rounded once to f32, as mergekit's f32 path does).
        for (size_t j = 0; j < job.n; j++) {
            buf[j] -= base[j];
        }
    }
    return buf.data();
}

const float * read_base(const Plan & plan, const TensorJob & job, std::vector<float> & buf) {
    if (!plan.base) {
        return nullptr;
    }
    buf.resize(job.n);
    plan.base_store->read_f32(job.name, job.shape, buf.data());
    plan.base_store->release(job.name);
    if (plan.base_input) {
        const auto target = plan.base_input->targets.find(job.name);
        if (target != plan.base_input->targets.end()) {
            add_lora_delta(*plan.base_input->adapter, target->second.first, target->second.second, 1.0f, 1.0f,
                           buf.data());
        }
    }
    return buf.data();
}

// The job's TensorInput from the files: the base, and per model a delta against it (or, without
// a base, the model's own tensor).
TensorInput load_inputs(const Plan & plan, const TensorJob & job, Worker & w) {
    TensorInput in;
    in.name = job.name;
    in.rows = job.rows;
    in.cols = job.cols;
    in.n    = job.n;
    in.base = read_base(plan, job, w.base);
    const size_t m = plan.inputs.size();
    in.deltas.assign(m, nullptr);
    in.models.assign(m, nullptr);
    w.tensors.resize(m);
    for (size_t i = 0; i < m; i++) {
        (in.base ? in.deltas : in.models)[i] = read_model(plan, job, i, in.base, w.tensors[i]);
    }
    return in;
}

// topk_scope: model: each model's cut over all its tensors, from a pass over the deltas before
// the merge (model_topk.h). Every tensor must give a model the same density (and gamma).
void plan_model_cuts(Plan & plan) {
    if (std::none_of(plan.jobs.begin(), plan.jobs.end(),
                     [](const TensorJob & j) { return j.params.topk == TopkScope::model; })) {
        return;
    }
    const size_t        m = plan.inputs.size();
    std::vector<double> density(m), gamma(m);
    std::vector<size_t> numel;
    const bool          breadcrumbs = std::string(plan.method->name).rfind("breadcrumbs", 0) == 0;
    for (size_t t = 0; t < plan.jobs.size(); t++) {
        const TensorJob & job = plan.jobs[t];
        numel.push_back(job.n);
        for (size_t i = 0; i < m; i++) {
            const ModelParams & p = job.params.models[i];
            if (job.params.topk != TopkScope::model ||
                (t > 0 && (p.density != density[i] || (breadcrumbs && p.gamma != gamma[i])))) {
                throw InputError(fmt::format("topk_scope: model takes one density{} per model for the whole model; "
                                             "model {} has another at tensor '{}'",
                                             breadcrumbs ? " and gamma" : "", i, job.name));
            }
            density[i] = p.density;
            gamma[i]   = breadcrumbs ? p.gamma : 0.0;
        }
    }
    fmt::print(stderr, "paft merge: topk_scope model: a first pass over every delta for each model's cut\n");
    const DeltaSource source = [&](size_t t, size_t i, std::vector<float> & buf) -> const float * {
        thread_local std::vector<float> base;
        return read_model(plan, plan.jobs[t], i, read_base(plan, plan.jobs[t], base), buf);
    };
    const std::vector<std::vector<ModelCut>> cuts = model_topk_cuts(numel, density, gamma, source);
    for (size_t t = 0; t < plan.jobs.size(); t++) {
        plan.jobs[t].params.cuts = cuts[t];
    }
}

// A tensor no model changes: the base's bytes as they are, or converted to the output dtype.
void copy_unchanged(const Plan & plan, size_t index, ShardedWriter & writer, Worker & w) {
    const TensorJob & job = plan.jobs[index];
    if (job.stored == job.out) {
        const std::span<const uint8_t> bytes = plan.base_store->bytes(job.name);
        writer.write_raw(index, bytes.data(), bytes.size());
    } else {
        w.out.resize(job.n);
        plan.base_store->read_f32(job.name, job.shape, w.out.data());
        writer.write_f32(index, w.out.data());
    }
    plan.base_store->release(job.name);
}

// Lora output: the factors of each projection the merge changes, gathered under a lock.
struct LoraOutput {
    std::vector<LowRankModule> modules;
    std::mutex                 mutex;
};

void factorize_job(const TensorJob & job, Worker & w, LoraOutput & lora, int rank) {
    for (size_t j = 0; j < job.n; j++) {
        w.out[j] -= w.base[j];  // the merged delta
    }
    const bool zero = std::all_of(w.out.begin(), w.out.begin() + (ptrdiff_t) job.n, [](float x) { return x == 0.0f; });
    int        layer = 0, target = 0;
    if (!lora_module_of(job.name, &layer, &target)) {
        if (!zero) {
            throw InputError(fmt::format("--out-format lora: the merge changes tensor '{}', which is not one of the "
                                         "seven projections a LoRA adapter holds",
                                         job.name));
        }
        return;
    }
    if (zero) {
        return;
    }
    LowRankModule module{layer, target, factorize_delta(w.out.data(), (int) job.rows, (int) job.cols, rank, job.name)};
    std::lock_guard<std::mutex> lock(lora.mutex);
    lora.modules.push_back(std::move(module));
}

void run_job(const Plan & plan, size_t index, ShardedWriter * writer, LoraOutput * lora, int rank, Worker & w) {
    const TensorJob & job = plan.jobs[index];
    if (!job.changed) {
        if (writer) copy_unchanged(plan, index, *writer, w);
        return;
    }
    const TensorInput in = load_inputs(plan, job, w);
    w.out.resize(job.n);
    if (std::all_of(in.deltas.begin(), in.deltas.end(), [](const float * d) { return !d; }) && in.base) {
        std::copy(in.base, in.base + job.n, w.out.begin());  // every model equals the base here
    } else {
        merge_tensor(*plan.method, in, job.params, w.scratch, w.out.data());
        // Inputs are finite (io/nonfinite.h), but a merge can still overflow (weights, lambda).
        check_finite_result(count_nonfinite(w.out.data(), job.n), fmt::format("merged tensor '{}'", job.name));
    }
    if (writer) {
        writer->write_f32(index, w.out.data());
    } else {
        factorize_job(job, w, *lora, rank);
    }
}

void copy_side_files(const Plan & plan, const MergeConfig & c, const std::string & dir, DType out_dtype) {
    const std::string text = read_file(plan.config_dir + "/config.json");
    check_json_depth(text, plan.config_dir + "/config.json");
    json config = json::parse(text);
    config["torch_dtype"] = torch_dtype_name(out_dtype);
    write_file_atomic(dir + "/config.json", config.dump(2) + "\n");
    copy_files_if_present(plan.config_dir, dir, {"generation_config.json"});
    copy_files_if_present(plan.tokenizer_dir, dir, kTokenizerFiles);
    write_file_atomic(dir + "/mergekit_config.yml", merge_config_yaml(c));
}

}  // namespace

MergeReport run_merge(const MergeConfig & c, const MergeRunOptions & o) {
    const auto start = std::chrono::steady_clock::now();
    if (o.out.empty()) {
        throw InputError("--out: no output directory given");
    }
    if (o.format == OutFormat::lora && o.rank < 1) {
        throw InputError(fmt::format("--rank: {} is not a positive rank (needed with --out-format lora)", o.rank));
    }
    if (o.shard_bytes == 0) {
        throw InputError("--shard-size: must be positive");
    }
    // Never written over, whatever --overwrite says: the models and adapters the merge reads.
    std::vector<NamedPath> inputs;
    auto                   add_input = [&](const ModelRef & ref, const std::string & where) {
        inputs.push_back({ref.model, where});
        inputs.push_back({ref.adapter, where + "'s adapter"});
    };
    if (c.base) {
        add_input(*c.base, "base_model");
    }
    for (const MergeInputModel & m : c.models) {
        add_input(m.ref, "the model");
    }
    if (c.tokenizer_source != "base") {
        inputs.push_back({c.tokenizer_source, "tokenizer_source"});
    }
    check_output_apart(o.out, "--out", inputs);
    std::error_code ec;
    if (fs::exists(o.out, ec) && !o.overwrite) {
        throw InputError(fmt::format("--out: {} already exists (remove it, or pass --overwrite)", o.out));
    }
    Plan plan = make_plan(c, o);
    plan_model_cuts(plan);

    OutputLock        lock(o.out, LockPlace::beside);  // one merge writes o.out at a time
    StagedFolder      staged(o.out);                   // removed unless the whole merge is written
    const std::string partial = staged.path();

    std::unique_ptr<ShardedWriter> writer;
    LoraOutput                     lora;
    if (o.format == OutFormat::hf) {
        std::vector<ShardedWriter::Entry> entries;
        for (const TensorJob & job : plan.jobs) {
            entries.push_back({job.name, job.shape, job.out});
        }
        writer = std::make_unique<ShardedWriter>(partial, "model", std::move(entries), o.shard_bytes,
                                                 std::map<std::string, std::string>{{"format", "pt"}});
    }

    uint64_t largest = 0;
    for (const TensorJob & job : plan.jobs) {
        largest = std::max(largest, job.work_bytes);
    }
    const int    threads = o.threads > 0 ? o.threads : std::max(1, (int) std::thread::hardware_concurrency());
    MemoryBudget budget(o.memory_limit > 0 ? o.memory_limit : std::max<uint64_t>(largest, 1ull << 30));
    Progress     progress("merge", (long) plan.jobs.size(), "tensors", o.plain_progress);

    // Jobs are taken in output order; each is merged whole by one worker, so the result does not
    // depend on the thread count. The first failure (lowest tensor) stops the others.
    std::atomic<size_t>             next{0};
    std::atomic<bool>               failed{false};
    std::vector<std::exception_ptr> errors(plan.jobs.size());
    std::mutex                      progress_mutex;
    size_t                          done = 0;
#pragma omp parallel num_threads(threads)
    {
        Worker w;
        for (size_t i = next++; i < plan.jobs.size() && !failed; i = next++) {
            budget.acquire(plan.jobs[i].work_bytes);
            try {
                run_job(plan, i, writer.get(), &lora, o.rank, w);
            } catch (...) {
                errors[i] = std::current_exception();
                failed    = true;
            }
            budget.release(plan.jobs[i].work_bytes);
            std::lock_guard<std::mutex> lock(progress_mutex);
            progress.update((long) ++done);
        }
    }
    for (const std::exception_ptr & e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
    progress.finish();

    MergeReport report;
    report.tensors = plan.jobs.size();
    for (const TensorJob & job : plan.jobs) {
        report.merged += job.changed ? 1 : 0;
    }
    if (writer) {
        writer->finish();
        report.bytes_out = writer->total_bytes();
        copy_side_files(plan, c, partial, plan.jobs.empty() ? DType::F32 : plan.jobs.front().out);
    } else {
        if (lora.modules.empty()) {
            throw InputError("--out-format lora: the merge changes no projection: there is nothing to factorise");
        }
        std::sort(lora.modules.begin(), lora.modules.end(), [](const LowRankModule & a, const LowRankModule & b) {
            return std::make_pair(a.layer, a.target) < std::make_pair(b.layer, b.target);
        });
        write_lora_adapter(partial, c.base->model, plan.base_config, lora.modules, o.rank);
        write_file_atomic(partial + "/mergekit_config.yml", merge_config_yaml(c));
        for (const LowRankModule & m : lora.modules) {
            report.energy.push_back({lora_module_path(m.layer, m.target) + ".weight", m.factors.retained});
        }
    }
    staged.commit(o.overwrite);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
}

}  // namespace paft
