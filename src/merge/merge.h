// The PAFT merge's options (paft parallel's `merge:` section, the short form of `paft merge`) and
// merging one adapter into its base in memory (paft sequential). Merges of models and adapters on
// disk run through merge/config.h's run_merge; docs/MERGING.md gives each method's math.
#pragma once

#include "merge/methods.h"
#include "model/lora.h"
#include "model/model.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paft {

struct MergeOptions {
    std::string           method = "ties";
    std::vector<double>   weights;    // per adapter; empty = 1 each
    std::vector<double>   densities;  // per adapter (sparsifying methods); empty = the method's default
    int                   normalize = -1;  // -1 = the method's default, 0 = false, 1 = true
    double                lambda    = 1.0;
    uint64_t              seed      = 42;  // DARE / DELLA masks
    std::optional<double> t;               // slerp: 0 = the base, 1 = the (single) adapter's model
    // How a sparsified delta is rescaled: "" = the method's default, "none", "l1" (match the
    // delta's L1 norm, mergekit), "density" (divide by density: the DARE paper, PEFT).
    std::string rescale;
};

// InputError naming the field unless `options` is a valid merge of `deltas` adapters: a known
// method, parameters it takes, values in range (the checks paft merge makes before any work).
void validate(const MergeOptions & options, size_t deltas);

}  // namespace paft
