// The PAFT merge's options checked as paft merge checks them, and one adapter merged into its base
// in memory (PEFT's merge_and_unload).
#include "merge/merge.h"

#include "core/error.h"
#include "merge/config.h"

#include <fmt/format.h>

#include <cmath>
#include <map>

namespace paft {

void validate(const MergeOptions & options, size_t deltas) {
    std::vector<std::string> adapters;
    for (size_t i = 0; i < deltas; i++) {
        adapters.push_back(fmt::format("adapter{}", i));  // names only: this check reads no files
    }
    check_merge_parameters(adapter_merge_config("base", adapters, options));
}

void merge_adapter_into(Model & base, const LoraAdapter & adapter, double weight) {
    const ModelConfig & c = base.config();
    if (adapter.layers() != c.num_layers) {
        throw InputError(fmt::format("adapter: it has {} layers, the base model {}", adapter.layers(), c.num_layers));
    }
    if (!std::isfinite(weight)) {
        throw InputError(fmt::format("weight: {} is not a finite number", weight));
    }
    std::map<std::string, const ParamEntry *> entries;
    for (const ParamEntry & e : base.layout().entries()) {
        entries[e.name] = &e;
    }
    std::vector<std::pair<const ParamEntry *, std::pair<int, int>>> modules;  // (weight, (layer, target))
    for (int l = 0; l < adapter.layers(); l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!adapter.has(l, t)) continue;
            const ParamEntry * e = entries.at(lora_module_path(l, t) + ".weight");
            if (e->shape != std::vector<int64_t>{adapter.out_features(t), adapter.in_features(t)}) {
                throw InputError(fmt::format("adapter: its {} is [{}, {}], the base model's [{}, {}]",
                                             lora_target_name(t), adapter.out_features(t), adapter.in_features(t),
                                             e->shape[0], e->shape[1]));
            }
            modules.push_back({e, {l, t}});
        }
    }
    // Each module's weight is a separate block of the buffer: one thread per module.
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < modules.size(); i++) {
        const auto [layer, target] = modules[i].second;
        add_lora_delta(adapter, layer, target, (float) weight, 1.0f, base.data() + modules[i].first->offset);
    }
}

}  // namespace paft
