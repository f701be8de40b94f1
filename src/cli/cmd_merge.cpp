// paft merge: mergekit's YAML (`paft merge CONFIG.yaml --out DIR`) or the short form for PAFT's
// case (`paft merge --base B --adapter A1 --adapter A2 --method ties --weight 1,1 --density 0.5`).
#include "cli/commands.h"
#include "core/error.h"
#include "merge/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

namespace paft {
namespace {

struct MergeFlags {
    std::string              config;
    std::string              base, method = "ties", dtype, out_dtype, tokenizer_source, shard_size = "5B",
                                   memory_limit, format = "hf";
    std::vector<std::string> adapters, models, params;
    std::vector<double>      weights, densities;
    MergeRunOptions          run;
};

// "5B", "500M", "64K" or a plain count (mergekit's --out-shard-size suffixes, in bytes here).
uint64_t parse_size(const std::string & text, const char * flag) {
    char *       end   = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    double       unit  = 1;
    const std::string suffix = end ? std::string(end) : "";
    if (suffix == "K" || suffix == "k") unit = 1e3;
    else if (suffix == "M" || suffix == "m") unit = 1e6;
    else if (suffix == "B" || suffix == "G" || suffix == "b" || suffix == "g") unit = 1e9;
    else if (!suffix.empty()) throw InputError(fmt::format("{}: '{}' is not a size (e.g. 5B, 500M, 64K)", flag, text));
    if (!(value > 0) || !std::isfinite(value * unit)) {
        throw InputError(fmt::format("{}: '{}' is not a positive size", flag, text));
    }
    return (uint64_t) (value * unit);
}

ParamSetting number_setting(double value, const std::string & where) {
    ParamSetting s;
    s.scalar.number = value;
    s.where         = where;
    return s;
}

// The short form as the config it stands for: each adapter is "base+adapter".
MergeConfig short_form_config(const MergeFlags & f) {
    if (f.base.empty()) {
        throw InputError("--base: the short form needs a base model (or give a CONFIG.yaml)");
    }
    MergeConfig c;
    c.method           = f.method;
    c.base             = ModelRef{f.base, ""};
    c.dtype            = f.dtype;
    c.out_dtype        = f.out_dtype;
    c.tokenizer_source = f.tokenizer_source;
    for (const std::string & a : f.adapters) {
        c.models.push_back({ModelRef{f.base, a}, {}, "--adapter " + a});
    }
    for (const std::string & m : f.models) {
        c.models.push_back({ModelRef{m, ""}, {}, "--model " + m});
    }
    if (c.models.empty()) {
        throw InputError("--adapter/--model: nothing to merge");
    }
    // Weights default to 1 each here (mergekit's YAML requires them), where the method takes them.
    const MergeMethodDef *    method  = find_merge_method(f.method);
    const std::vector<double> ones    = {1.0};
    const std::vector<double> & weights = f.weights.empty() && method && find_param(*method, "weight") ? ones : f.weights;
    for (const auto & [values, name] : {std::pair{&weights, "weight"}, {&f.densities, "density"}}) {
        if (values->empty()) continue;
        if (values->size() != c.models.size() && values->size() != 1) {
            throw InputError(fmt::format("--{}: {} values for {} models (give one per model, or one for all)", name,
                                         values->size(), c.models.size()));
        }
        for (size_t i = 0; i < c.models.size(); i++) {
            const double v = (*values)[values->size() == 1 ? 0 : i];
            c.models[i].parameters[name] = number_setting(v, fmt::format("--{}", name));
        }
    }
    for (const std::string & p : f.params) {
        const size_t eq = p.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw InputError(fmt::format("--param: '{}' is not NAME=VALUE", p));
        }
        ParamSetting s;
        s.where = "--param " + p;
        const std::string value = p.substr(eq + 1);
        char *            end   = nullptr;
        const double      num   = std::strtod(value.c_str(), &end);
        if (!value.empty() && end && *end == '\0') {
            s.scalar.number = num;
        } else if (value == "true" || value == "false") {
            s.scalar.kind    = ParamScalar::Kind::boolean;
            s.scalar.boolean = value == "true";
        } else {
            s.scalar.kind = ParamScalar::Kind::text;
            s.scalar.text = value;
        }
        c.parameters[p.substr(0, eq)] = s;
    }
    return c;
}

void print_report(const MergeReport & r, const MergeRunOptions & o) {
    if (o.format == OutFormat::lora) {
        double low = 1.0, sum = 0.0;
        for (const LoraEnergy & e : r.energy) {
            low = std::min(low, e.retained);
            sum += e.retained;
        }
        fmt::print("wrote a rank-{} LoRA adapter of the merged delta to {} ({} modules; retained energy: mean {:.4f}, "
                   "min {:.4f}; per module in lora_extraction.json) in {:.1f} s\n",
                   o.rank, o.out, r.energy.size(), r.energy.empty() ? 1.0 : sum / (double) r.energy.size(), low,
                   r.seconds);
        return;
    }
    const double mb = (double) r.bytes_out / 1e6;
    fmt::print("merged {} tensors ({} changed) into {}: {} in {:.1f} s\n", r.tensors, r.merged, o.out,
               mb >= 1000 ? fmt::format("{:.2f} GB", mb / 1000) : fmt::format("{:.1f} MB", mb), r.seconds);
}

}  // namespace

void register_merge(CLI::App & app) {
    auto   f   = std::make_shared<MergeFlags>();
    auto * cmd = app.add_subcommand("merge", "Merge models or LoRA adapters (mergekit's methods and YAML)");
    cmd->footer("Methods: " + merge_method_list() +
                ".\nExamples:\n  paft merge merge.yaml --out merged\n"
                "  paft merge --base BASE --adapter sft --adapter dpo --method ties --weight 1,1 --density 0.5 --out merged");
    cmd->add_option("config", f->config, "A mergekit YAML config");
    cmd->add_option("--out", f->run.out, "Output directory (a Hugging Face model, or a PEFT adapter with --out-format lora)")
        ->required();
    cmd->add_option("--base", f->base, "Short form: the base model directory");
    cmd->add_option("--adapter", f->adapters, "Short form: a PEFT LoRA adapter over --base (repeat)");
    cmd->add_option("--model", f->models, "Short form: a full model directory to merge (repeat)");
    cmd->add_option("--method", f->method, "Short form: merge method")->capture_default_str();
    cmd->add_option("--weight", f->weights, "Short form: weights, one per model (comma separated) or one for all")
        ->delimiter(',');
    cmd->add_option("--density", f->densities, "Short form: densities, one per model or one for all")->delimiter(',');
    cmd->add_option("--param", f->params, "Short form: a global parameter NAME=VALUE (lambda, normalize, t, ...)");
    cmd->add_option("--dtype", f->dtype, "Short form: mergekit's dtype (bfloat16, float16, float32)");
    cmd->add_option("--out-dtype", f->out_dtype, "Short form: output dtype (default: dtype, else as stored)");
    cmd->add_option("--tokenizer-source", f->tokenizer_source, "Short form: where the tokenizer files come from (base)");
    cmd->add_option("--threads", f->run.threads, "Worker threads (0 = all cores)")->capture_default_str();
    cmd->add_option("--shard-size", f->shard_size, "Largest output shard, bytes (5B = 5e9, 500M, ...)")->capture_default_str();
    cmd->add_option("--memory-limit", f->memory_limit, "Working buffers of all workers together (e.g. 2B; default: "
                                                        "the largest tensor's needs, at least 1 GB)");
    cmd->add_option("--seed", f->run.seed, "Seed of DARE's and DELLA's random masks")->capture_default_str();
    cmd->add_option("--out-format", f->format, "hf (a model) or lora (the merged delta as a PEFT adapter)")
        ->capture_default_str();
    cmd->add_option("--rank", f->run.rank, "LoRA rank of --out-format lora");
    cmd->add_flag("--overwrite", f->run.overwrite, "Replace an existing output directory");
    cmd->callback([f]() {
        const bool short_form = !f->base.empty() || !f->adapters.empty() || !f->models.empty() || !f->weights.empty() ||
                                !f->densities.empty() || !f->params.empty();
        if (!f->config.empty() && short_form) {
            throw InputError("give either a CONFIG.yaml or the short form (--base, --adapter, ...), not both");
        }
        if (f->config.empty() && !short_form) {
            throw InputError("nothing to merge: give a CONFIG.yaml, or --base and --adapter/--model");
        }
        MergeRunOptions run = f->run;
        run.shard_bytes     = parse_size(f->shard_size, "--shard-size");
        run.memory_limit    = f->memory_limit.empty() ? 0 : parse_size(f->memory_limit, "--memory-limit");
        if (f->format != "hf" && f->format != "lora") {
            throw InputError(fmt::format("--out-format: '{}' is not hf or lora", f->format));
        }
        run.format = f->format == "lora" ? OutFormat::lora : OutFormat::hf;
        if (run.threads < 0) {
            throw InputError(fmt::format("--threads: {} is negative", run.threads));
        }
        const MergeConfig config = f->config.empty() ? short_form_config(*f) : read_merge_config(f->config);
        print_report(run_merge(config, run), run);
    });
}

}  // namespace paft
