// Merging LoRA adapters into their base: each adapter's delta of a targeted weight, s * B * A,
// is formed per Hugging Face tensor (q_proj, k_proj, v_proj separately, although the model
// stores them stacked) and handed to the method with the base tensor.
//
// Products: BLAS directly, not the Backend. Merging works on host buffers one tensor at a time,
// and a Backend owns process-wide thread settings that a library call should not change.
#include "merge/merge.h"

#include "core/error.h"
#include "merge/methods.h"

#include <cblas.h>
#include <fmt/format.h>

#include <cmath>
#include <exception>
#include <iterator>
#include <map>
#include <optional>

namespace paft {
namespace {

// The Hugging Face name of a LoRA target's weight in layer l, as ParamLayout names it.
std::string target_tensor_name(int layer, int target) {
    return fmt::format("model.layers.{}.{}.{}.weight", layer, target <= TARGET_O ? "self_attn" : "mlp",
                       lora_target_name(target));
}

struct Module {
    int layer = -1, target = -1;  // -1: not a LoRA target
};

// Which LoRA module (if any) each entry of the layout is.
std::vector<Module> entry_modules(const ParamLayout & layout, int layers) {
    std::map<std::string, size_t> index;
    for (size_t e = 0; e < layout.entries().size(); e++) {
        index[layout.entries()[e].name] = e;
    }
    std::vector<Module> modules(layout.entries().size());
    for (int l = 0; l < layers; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            modules.at(index.at(target_tensor_name(l, t))) = Module{l, t};
        }
    }
    return modules;
}

// InputError naming `field` unless the adapter was made for `base`'s shapes.
void check_adapter(const Model & base, const LoraAdapter * adapter, const std::string & field) {
    if (!adapter) {
        throw InputError(fmt::format("{}: no adapter", field));
    }
    const ModelConfig & c = base.config();
    if (adapter->layers() != c.num_layers) {
        throw InputError(fmt::format("{}: the adapter has {} layers, the base model {}", field, adapter->layers(),
                                     c.num_layers));
    }
    const int C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    const int in[TARGET_COUNT]  = {C, C, C, Q, C, C, F};
    const int out[TARGET_COUNT] = {Q, K, K, C, F, F, C};
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (adapter->config().targets[t] && (adapter->in_features(t) != in[t] || adapter->out_features(t) != out[t])) {
            throw InputError(fmt::format("{}: its {} is [{}, {}], the base model's [{}, {}]", field,
                                         lora_target_name(t), adapter->out_features(t), adapter->in_features(t), out[t],
                                         in[t]));
        }
    }
}

// C [out, in] = alpha * B [out, r] * A [r, in] + beta * C.
void lora_product(const LoraAdapter & a, int layer, int target, float alpha, float beta, float * C) {
    const int out = a.out_features(target), in = a.in_features(target), r = a.config().r;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, alpha, a.B(layer, target), r,
                a.A(layer, target), in, beta, C, in);
}

// Runs job(i, state) for i < count over OpenMP threads, each thread with its own State;
// rethrows the exception of the lowest failing i, so errors do not depend on scheduling.
template <class State, class Job>
void parallel_jobs(size_t count, Job job) {
    std::vector<std::exception_ptr> errors(count);
#pragma omp parallel
    {
        State state;
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < count; i++) {
            try {
                job(i, state);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    }
    for (const std::exception_ptr & e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
}

struct MergeThreadState {
    MergeScratch                    scratch;
    std::vector<std::vector<float>> deltas;  // s * B * A per adapter
};

struct NoState {};

}  // namespace

std::vector<std::string> merge_method_names() {
    std::vector<std::string> names;
    for (const MergeMethodDef & m : merge_methods()) {
        bool runnable = true;
        for (const ParamSpec & spec : m.params) {
            runnable &= !(spec.required && spec.scope == ParamScope::global);
        }
        if (runnable) {
            names.push_back(m.name);
        }
    }
    return names;
}

ResolvedMerge resolve_merge_options(const MergeOptions & o, size_t deltas) {
    const MergeMethodDef * def = find_merge_method(o.method);
    if (!def) {
        throw InputError(fmt::format("method: unknown merge method '{}' (known: {})", o.method, merge_method_list()));
    }
    if (deltas == 0) {
        throw InputError("adapters: a merge needs at least one adapter to merge");
    }
    for (const auto * list : {&o.weights, &o.densities}) {
        const char * field = list == &o.weights ? "weights" : "densities";
        if (!list->empty() && list->size() != deltas) {
            throw InputError(fmt::format("{}: {} values for {} models (give one per model, or none)", field,
                                         list->size(), deltas));
        }
    }
    if (o.normalize < -1 || o.normalize > 1) {
        throw InputError(fmt::format("normalize: {} is not -1 (method default), 0 or 1", o.normalize));
    }
    // The fields set must be parameters of the method.
    const std::pair<bool, const char *> given[] = {{!o.weights.empty(), "weight"},
                                                   {!o.densities.empty(), "density"},
                                                   {o.normalize != -1, "normalize"},
                                                   {o.lambda != 1.0, "lambda"},
                                                   {!o.rescale.empty(), "rescale"}};
    const char * fields[] = {"weights", "densities", "normalize", "lambda", "rescale"};
    for (size_t f = 0; f < std::size(given); f++) {
        if (given[f].first) {
            check_param_name(*def, given[f].second, false, fields[f]);
        }
    }
    const ParamLookup lookup = [&](const std::string & name, int model) -> std::optional<ParamScalar> {
        ParamScalar v;
        if (name == "weight") {
            v.number = o.weights.empty() ? 1.0 : o.weights[model];
        } else if (name == "density" && !o.densities.empty()) {
            v.number = o.densities[model];
        } else if (name == "normalize" && o.normalize != -1) {
            v.kind    = ParamScalar::Kind::boolean;
            v.boolean = o.normalize == 1;
        } else if (name == "lambda") {
            v.number = o.lambda;
        } else if (name == "rescale" && !o.rescale.empty()) {
            v.kind = ParamScalar::Kind::text;
            v.text = o.rescale;
        } else {
            return std::nullopt;
        }
        return v;
    };
    ResolvedMerge r;
    r.method      = def;
    r.params      = resolve_tensor_params(*def, deltas, lookup, "");
    r.params.seed = o.seed;
    return r;
}

void validate(const MergeOptions & options, size_t deltas) {
    resolve_merge_options(options, deltas);
}

std::shared_ptr<Model> merge_adapters(const Model & base, const std::vector<const LoraAdapter *> & adapters,
                                      const MergeOptions & options) {
    const ResolvedMerge merge = resolve_merge_options(options, adapters.size());
    for (size_t a = 0; a < adapters.size(); a++) {
        check_adapter(base, adapters[a], fmt::format("adapters[{}]", a));
    }
    auto                            merged  = std::make_shared<Model>(base.config());
    const std::vector<ParamEntry> & entries = base.layout().entries();
    const std::vector<Module>       modules = entry_modules(base.layout(), base.config().num_layers);
    // One tensor per job: each is merged entirely by one thread, so the result does not depend
    // on the thread count. A thread holds one delta per adapter of the tensor it is merging.
    parallel_jobs<MergeThreadState>(entries.size(), [&](size_t e, MergeThreadState & st) {
        const ParamEntry & entry = entries[e];
        const Module       mod   = modules[e];
        TensorInput        in;
        in.name = entry.name;
        in.n    = entry.numel();
        in.rows = entry.shape.size() >= 2 ? (size_t) entry.shape[0] : 1;  // [rows, cols]; a 1-D tensor is one row
        in.cols = in.rows > 0 ? in.n / in.rows : 0;
        in.base = base.data() + entry.offset;
        in.deltas.assign(adapters.size(), nullptr);
        st.deltas.resize(adapters.size());
        for (size_t a = 0; a < adapters.size(); a++) {
            if (mod.target >= 0 && adapters[a]->has(mod.layer, mod.target)) {
                st.deltas[a].resize(in.n);
                lora_product(*adapters[a], mod.layer, mod.target, adapters[a]->config().scale(), 0.0f,
                             st.deltas[a].data());
                in.deltas[a] = st.deltas[a].data();
            }
        }
        merge_tensor(*merge.method, in, merge.params, st.scratch, merged->data() + entry.offset);
    });
    return merged;
}

void merge_adapter_into(Model & base, const LoraAdapter & adapter, double weight) {
    check_adapter(base, &adapter, "adapter");
    if (!std::isfinite(weight)) {
        throw InputError(fmt::format("weight: {} is not a finite number", weight));
    }
    const std::vector<ParamEntry> & entries = base.layout().entries();
    const std::vector<Module>       modules = entry_modules(base.layout(), base.config().num_layers);
    const float                     alpha   = (float) (weight * adapter.config().scale());
    // Each module's weight is a separate block of the buffer: one thread per module.
    parallel_jobs<NoState>(entries.size(), [&](size_t e, NoState &) {
        const Module mod = modules[e];
        if (mod.target >= 0 && adapter.has(mod.layer, mod.target)) {
            lora_product(adapter, mod.layer, mod.target, alpha, 1.0f, base.data() + entries[e].offset);
        }
    });
}

}  // namespace paft
