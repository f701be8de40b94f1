// The PAFT merge's options checked as paft merge checks them (folding one adapter into its base in
// memory is model/lora's fold_lora_adapter).
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

}  // namespace paft
