#include "merge/sparsity.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "io/safetensors.h"

#include <cblas.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

namespace paft {
namespace {

namespace fs = std::filesystem;

constexpr size_t  kTileFloats         = 1 << 20;  // a delta tile: at most 4 MB per thread (at least one row)
constexpr int64_t kParallelMinEntries = 1 << 16;  // smaller tensors are compared on one thread

const char * const kProjections[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
constexpr int      kProjectionCount = 7;

std::vector<std::string> split_dots(const std::string & name) {
    std::vector<std::string> parts;
    size_t                   start = 0;
    for (size_t dot; (dot = name.find('.', start)) != std::string::npos; start = dot + 1) {
        parts.push_back(name.substr(start, dot - start));
    }
    parts.push_back(name.substr(start));
    return parts;
}

bool all_digits(const std::string & s) {
    return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The group of a tensor name: "model.layers.3.self_attn.q_proj.weight" -> (3, "q_proj"),
// "model.layers.3.self_attn.q_proj.bias" -> (3, "q_proj.bias"), "lm_head.weight" -> (-1, "lm_head").
std::pair<int, std::string> tensor_group(const std::string & name) {
    const std::vector<std::string> parts = split_dots(name);
    int                            layer = -1;
    for (size_t i = 0; i + 1 < parts.size(); i++) {
        if (parts[i] == "layers" && all_digits(parts[i + 1])) {
            layer = std::stoi(parts[i + 1]);
            break;
        }
    }
    const size_t n = parts.size();
    if (n < 2) {
        return {layer, name};
    }
    return {layer, parts[n - 1] == "weight" ? parts[n - 2] : parts[n - 2] + "." + parts[n - 1]};
}

// Display order of a module: (projection index, or 7 for others; inside a layer or not; name).
std::tuple<int, bool, std::string> module_order_key(const std::string & module, bool in_layer) {
    const std::string head = module.substr(0, module.find('.'));
    for (int p = 0; p < kProjectionCount; p++) {
        if (head == kProjections[p]) {
            return {p, false, module};
        }
    }
    return {kProjectionCount, !in_layer, module};
}

void check_threshold(double threshold) {
    if (!(threshold > 0) || !std::isfinite(threshold)) {
        throw InputError(fmt::format("threshold must be a positive number, got {}", threshold));
    }
}

// Sorts counts by layer (-1 last), then module order.
void sort_counts(std::vector<SparsityCount> & counts) {
    auto key = [](const SparsityCount & c) {
        return std::make_tuple(c.layer < 0 ? INT_MAX : c.layer, module_order_key(c.module, c.layer >= 0));
    };
    std::sort(counts.begin(), counts.end(),
              [&](const SparsityCount & a, const SparsityCount & b) { return key(a) < key(b); });
}

// Adds one tensor's counts to its (layer, module) group.
void add_to_group(std::map<std::pair<int, std::string>, SparsityCount> & groups, const std::string & tensor,
                  int64_t near_zero, int64_t total) {
    auto [layer, module] = tensor_group(tensor);
    SparsityCount & c    = groups[{layer, module}];
    c.layer              = layer;
    c.module             = module;
    c.near_zero += near_zero;
    c.total += total;
}

std::vector<SparsityCount> groups_to_counts(const std::map<std::pair<int, std::string>, SparsityCount> & groups) {
    std::vector<SparsityCount> counts;
    for (const auto & [key, c] : groups) {
        counts.push_back(c);
    }
    sort_counts(counts);
    return counts;
}

bool is_float_dtype(DType dtype) {
    return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F64;
}

void check_float(const TensorStore & store, const std::string & name, const std::string & where) {
    if (!is_float_dtype(store.info(name).dtype)) {
        throw InputError(fmt::format("{}: tensor '{}' has dtype {}; expected F32, F16, BF16 or F64", where, name,
                                     dtype_name(store.info(name).dtype)));
    }
}

std::string shape_text(const std::vector<int64_t> & shape) {
    return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Sums the counts `keep` accepts.
SparsityShare sum_counts(const SparsityReport & report, const std::function<bool(const SparsityCount &)> & keep) {
    SparsityShare s;
    for (const SparsityCount & c : report.counts) {
        if (keep(c)) {
            s.near_zero += c.near_zero;
            s.total += c.total;
        }
    }
    return s;
}

// ---- adapters ---------------------------------------------------------------------------------

struct AdapterSettings {
    int                      r     = 0;
    float                    scale = 0;  // s
    std::vector<std::string> targets;    // target_modules when a list of names (a regex: not checked)
};

// r, lora_alpha and use_rslora from adapter_config.json; what would make the delta something
// other than s * B * A with one rank is refused.
AdapterSettings read_adapter_settings(const std::string & dir) {
    using json               = nlohmann::json;
    const std::string path   = dir + "/adapter_config.json";
    json              j;
    try {
        const std::string text = read_file(path);
        check_json_depth(text, path);
        j = json::parse(text);
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: not valid JSON: {}", path, e.what()));
    }
    if (!j.is_object()) {
        throw InputError(fmt::format("{}: expected a JSON object", path));
    }
    if (j.contains("peft_type") && j["peft_type"] != "LORA") {
        throw InputError(fmt::format("{}: peft_type {} is not supported (only LORA)", path, json_snippet(j["peft_type"])));
    }
    if (j.contains("use_dora") && j["use_dora"] == true) {
        throw InputError(fmt::format("{}: use_dora = true is not supported (a DoRA delta is not s * B * A)", path));
    }
    for (const char * pattern : {"rank_pattern", "alpha_pattern"}) {
        if (j.contains(pattern) && !j[pattern].is_null() && !(j[pattern].is_object() && j[pattern].empty())) {
            throw InputError(fmt::format("{}: a non-empty {} is not supported (one rank and alpha for every module)",
                                         path, pattern));
        }
    }
    if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() <= 0 || j["r"].get<int64_t>() > 65536) {
        throw InputError(fmt::format("{}: field 'r' must be a positive integer", path));
    }
    AdapterSettings s;
    s.r         = j["r"].get<int>();
    float alpha = 8.0f;  // PEFT's default lora_alpha
    if (j.contains("lora_alpha") && !j["lora_alpha"].is_null()) {
        if (!j["lora_alpha"].is_number() || !std::isfinite(j["lora_alpha"].get<double>())) {
            throw InputError(fmt::format("{}: field 'lora_alpha' must be a number, got {}", path,
                                         json_snippet(j["lora_alpha"])));
        }
        alpha = j["lora_alpha"].get<float>();
    }
    bool rslora = false;
    if (j.contains("use_rslora") && !j["use_rslora"].is_null()) {
        if (!j["use_rslora"].is_boolean()) {
            throw InputError(fmt::format("{}: field 'use_rslora' must be true or false", path));
        }
        rslora = j["use_rslora"].get<bool>();
    }
    // As LoraConfig::scale computes it, in f32.
    s.scale = rslora ? alpha / std::sqrt((float) s.r) : alpha / (float) s.r;
    if (j.contains("target_modules") && j["target_modules"].is_array()) {
        for (const json & t : j["target_modules"]) {
            if (!t.is_string()) {
                throw InputError(fmt::format("{}: target_modules must be a list of module names, got {}", path,
                                             json_snippet(j["target_modules"])));
            }
            s.targets.push_back(t.get<std::string>());
        }
    }
    return s;
}

struct AdapterModule {
    std::string a_name, b_name;
    int         in = 0, out = 0;
};

// Every lora_A / lora_B pair of the adapter's tensors, with shapes checked: A [r, in], B [out, r].
std::vector<AdapterModule> adapter_modules(const TensorStore & store, int r, const std::string & where) {
    const std::string          suffix_a = ".lora_A.weight", suffix_b = ".lora_B.weight";
    std::vector<AdapterModule> modules;
    for (const std::string & name : store.names()) {
        const bool is_a = name.ends_with(suffix_a), is_b = name.ends_with(suffix_b);
        if (!is_a && !is_b) {
            throw InputError(fmt::format("{}: tensor '{}' is neither a lora_A nor a lora_B weight (only LoRA on "
                                         "linear layers is supported)",
                                         where, name));
        }
        const std::string stem = name.substr(0, name.size() - suffix_a.size());
        const std::string pair = stem + (is_a ? suffix_b : suffix_a);
        if (!store.has(pair)) {
            throw InputError(fmt::format("{}: tensor '{}' has no matching '{}'", where, name, pair));
        }
        if (is_b) {
            continue;  // handled with its lora_A
        }
        const std::vector<int64_t> & a = store.info(name).shape;
        const std::vector<int64_t> & b = store.info(pair).shape;
        if (a.size() != 2 || b.size() != 2 || a[0] != r || b[1] != r || a[1] <= 0 || b[0] <= 0 || a[1] > INT_MAX ||
            b[0] > INT_MAX) {
            throw InputError(fmt::format("{}: tensors '{}' {} and '{}' {} are not a rank-{} pair [r, in], [out, r] "
                                         "(r from adapter_config.json)",
                                         where, name, shape_text(a), pair, shape_text(b), r));
        }
        check_float(store, name, where);
        check_float(store, pair, where);
        modules.push_back({name, pair, (int) a[1], (int) b[0]});
    }
    if (modules.empty()) {
        throw InputError(fmt::format("{}: no lora_A / lora_B tensors", where));
    }
    return modules;
}

// Near-zero entries of delta = s * B * A, formed kTileFloats at a time: tile = s * B[i0:i0+rows] A.
int64_t count_module(const TensorStore & store, const AdapterModule & m, int r, float s, double threshold,
                     std::vector<float> & tile) {
    const std::vector<float> A = store.read_f32(m.a_name, {r, m.in});   // [r, in]
    const std::vector<float> B = store.read_f32(m.b_name, {m.out, r});  // [out, r]
    const int                tile_rows = (int) std::max<size_t>(1, kTileFloats / (size_t) m.in);
    int64_t                  near_zero = 0;
    for (int i0 = 0; i0 < m.out; i0 += tile_rows) {
        const int rows = std::min(tile_rows, m.out - i0);
        tile.resize((size_t) rows * m.in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, m.in, r, s, B.data() + (size_t) i0 * r, r,
                    A.data(), m.in, 0.0f, tile.data(), m.in);
        for (float v : tile) {
            near_zero += std::fabs(v) < threshold;
        }
    }
    return near_zero;
}

// ---- models -----------------------------------------------------------------------------------

// Tensor names must be the same in both folders, with equal shapes and float dtypes.
void check_same_tensors(const TensorStore & model, const TensorStore & base, const std::string & dir,
                        const std::string & base_dir) {
    const std::vector<std::string> names = model.names(), base_names = base.names();
    for (const std::string & name : names) {
        if (!base.has(name)) {
            throw InputError(fmt::format("tensor '{}' of {} is not in the base {}", name, dir, base_dir));
        }
        if (model.info(name).shape != base.info(name).shape) {
            throw InputError(fmt::format("tensor '{}': shape {} in {} but {} in the base {}", name,
                                         shape_text(model.info(name).shape), dir, shape_text(base.info(name).shape),
                                         base_dir));
        }
        check_float(model, name, dir);
        check_float(base, name, base_dir);
    }
    for (const std::string & name : base_names) {
        if (!model.has(name)) {
            throw InputError(fmt::format("tensor '{}' of the base {} is not in {}", name, base_dir, dir));
        }
    }
}

bool is_model_dir(const std::string & path) {
    return is_file(path + "/model.safetensors") || is_file(path + "/model.safetensors.index.json");
}

}  // namespace

const char * delta_kind_name(DeltaKind kind) {
    return kind == DeltaKind::adapter ? "adapter" : "model";
}

DeltaKind classify_delta_source(const std::string & path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        throw InputError(fmt::format("{}: no such file or folder", path));
    }
    if (!fs::is_directory(path, ec)) {
        throw InputError(fmt::format("{}: not a folder (expected a PEFT adapter or a Hugging Face model folder)", path));
    }
    if (fs::exists(path + "/adapter_config.json", ec)) {
        return DeltaKind::adapter;
    }
    if (is_model_dir(path)) {
        return DeltaKind::model;
    }
    throw InputError(fmt::format("{}: neither a PEFT adapter folder (adapter_config.json) nor a model folder "
                                 "(model.safetensors or model.safetensors.index.json)",
                                 path));
}

SparsityReport adapter_sparsity(const std::string & dir, double threshold, const SparsityProgress & progress) {
    check_threshold(threshold);
    const AdapterSettings            settings = read_adapter_settings(dir);
    const TensorStore                store    = TensorStore::open_dir(dir, "adapter_model");
    const std::vector<AdapterModule> modules  = adapter_modules(store, settings.r, dir);
    // A module adapter_config.json names but the weights lack: PEFT would refuse to load it.
    for (const std::string & target : settings.targets) {
        const bool present = std::any_of(modules.begin(), modules.end(), [&](const AdapterModule & m) {
            const std::string module = m.a_name.substr(0, m.a_name.size() - std::string(".lora_A.weight").size());
            return module == target || module.ends_with("." + target);
        });
        if (!present) {
            throw InputError(fmt::format("{}: adapter_config.json targets '{}', but adapter_model.safetensors has no "
                                         "lora_A/lora_B weights for it",
                                         dir, target));
        }
    }
    std::vector<int64_t>             near_zero(modules.size());
    std::vector<std::exception_ptr>  errors(modules.size());
    long                             done = 0;
    // One module per thread at a time; the counts are integers, so the result does not depend on
    // the threads. Exceptions cannot leave an OpenMP region: the first by module is rethrown.
#pragma omp parallel
    {
        std::vector<float> tile;  // each thread's own
#pragma omp for schedule(dynamic)
        for (size_t m = 0; m < modules.size(); m++) {
            try {
                near_zero[m] = count_module(store, modules[m], settings.r, settings.scale, threshold, tile);
            } catch (...) {
                errors[m] = std::current_exception();
            }
#pragma omp critical(sparsity_progress)
            {
                done++;
                if (progress) {
                    progress(done, (long) modules.size());
                }
            }
        }
    }
    for (const std::exception_ptr & e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
    std::map<std::pair<int, std::string>, SparsityCount> groups;
    for (size_t m = 0; m < modules.size(); m++) {
        const std::string & a = modules[m].a_name;
        // "...q_proj.lora_A.weight" groups as "...q_proj.weight", the weight it changes.
        add_to_group(groups, a.substr(0, a.size() - std::string(".lora_A.weight").size()) + ".weight", near_zero[m],
                     (int64_t) modules[m].out * modules[m].in);
    }
    return {dir, DeltaKind::adapter, groups_to_counts(groups)};
}

SparsityReport model_sparsity(const std::string & dir, const std::string & base_dir, double threshold,
                              const SparsityProgress & progress) {
    check_threshold(threshold);
    const TensorStore model = TensorStore::open_dir(dir, "model");
    const TensorStore base  = TensorStore::open_dir(base_dir, "model");
    check_same_tensors(model, base, dir, base_dir);
    const std::vector<std::string>                       names = model.names();
    std::map<std::pair<int, std::string>, SparsityCount> groups;
    std::vector<float>                                   w, w_base;  // reused: the largest tensor decides memory
    for (size_t t = 0; t < names.size(); t++) {
        const std::vector<int64_t> & shape = model.info(names[t]).shape;
        const int64_t                n     = model.info(names[t]).numel();
        w.resize((size_t) n);
        w_base.resize((size_t) n);
        model.read_f32(names[t], shape, w.data());
        base.read_f32(names[t], shape, w_base.data());
        // In double, the difference of two floats is exact (but for far-apart exponents), so the
        // comparison with the threshold is exact too.
        int64_t near_zero = 0;
#pragma omp parallel for schedule(static) reduction(+ : near_zero) if (n >= kParallelMinEntries)
        for (int64_t i = 0; i < n; i++) {
            near_zero += std::fabs((double) w[i] - (double) w_base[i]) < threshold;
        }
        add_to_group(groups, names[t], near_zero, n);
        if (progress) {
            progress((long) t + 1, (long) names.size());
        }
    }
    return {dir, DeltaKind::model, groups_to_counts(groups)};
}

SparsityReport measure_sparsity(const std::string & path, const std::string & base_dir, double threshold,
                                const SparsityProgress & progress) {
    check_threshold(threshold);
    if (classify_delta_source(path) == DeltaKind::adapter) {
        return adapter_sparsity(path, threshold, progress);
    }
    if (base_dir.empty()) {
        throw InputError(fmt::format("{} is a model folder: its delta needs the base model it was fine-tuned from "
                                     "(--base DIR)",
                                     path));
    }
    if (classify_delta_source(base_dir) != DeltaKind::model) {
        throw InputError(fmt::format("{}: the base must be a model folder (model.safetensors or "
                                     "model.safetensors.index.json), not an adapter",
                                     base_dir));
    }
    return model_sparsity(path, base_dir, threshold, progress);
}

std::vector<std::string> sparsity_modules(const std::vector<SparsityReport> & reports) {
    std::map<std::string, bool> in_layer;  // module -> seen inside a layer
    for (const SparsityReport & report : reports) {
        for (const SparsityCount & c : report.counts) {
            in_layer[c.module] = in_layer[c.module] || c.layer >= 0;
        }
    }
    std::vector<std::string> modules;
    for (const auto & [module, inside] : in_layer) {
        modules.push_back(module);
    }
    std::sort(modules.begin(), modules.end(), [&](const std::string & a, const std::string & b) {
        return module_order_key(a, in_layer[a]) < module_order_key(b, in_layer[b]);
    });
    return modules;
}

std::vector<int> sparsity_layers(const SparsityReport & report) {
    std::set<int> layers;
    for (const SparsityCount & c : report.counts) {
        if (c.layer >= 0) {
            layers.insert(c.layer);
        }
    }
    return {layers.begin(), layers.end()};
}

SparsityShare module_share(const SparsityReport & report, const std::string & module) {
    return sum_counts(report, [&](const SparsityCount & c) { return c.module == module; });
}

SparsityShare layer_share(const SparsityReport & report, int layer) {
    return sum_counts(report, [&](const SparsityCount & c) { return c.layer == layer; });
}

SparsityShare cell_share(const SparsityReport & report, int layer, const std::string & module) {
    return sum_counts(report, [&](const SparsityCount & c) { return c.layer == layer && c.module == module; });
}

SparsityShare overall_share(const SparsityReport & report) {
    return sum_counts(report, [](const SparsityCount &) { return true; });
}

}  // namespace paft
