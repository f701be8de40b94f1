#include "merge/model_topk.h"

#include "core/error.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>

namespace paft {
namespace {

constexpr size_t kHighBins = 1u << 15;  // |d|'s bit pattern >> 16 (the sign bit is clear)
constexpr size_t kLowBins  = 1u << 16;  // its low 16 bits
constexpr size_t kAll      = std::numeric_limits<size_t>::max();

// A non-negative float's bit pattern orders like the float (NaN aside): |d| as a sortable key.
uint32_t magnitude_key(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits & 0x7FFFFFFFu;
}

float key_value(uint32_t key) {
    float x;
    std::memcpy(&x, &key, sizeof x);
    return x;
}

// The search for the k-th largest key of one model.
struct Selection {
    size_t              k = 0;           // 0: selects nothing (no cut)
    uint32_t            high = 0;        // pass 1: the bin (key >> 16) of the k-th largest
    size_t              above_high = 0;  // keys in higher bins
    std::vector<size_t> low;             // pass 2: counts of the low 16 bits inside bin `high`
    uint32_t            key = 0;         // the threshold key
    size_t              need = 0;        // how many entries equal to it are kept
    bool                all_equal = false;  // need == every entry equal to it: no pass 3
    std::vector<size_t> equal;           // pass 3: entries equal to the threshold, per tensor
};

struct ModelSearch {
    bool                   read = false;  // false: keeps everything, never read
    std::vector<size_t>    high;          // pass 1 counts
    std::vector<Selection> selections;    // [0] keep (n_top + n_keep), [1] drop (n_top)
};

// Runs job(u, buffer) for u < count over OpenMP threads, each with its own delta buffer;
// rethrows the exception of the lowest failing u, so errors do not depend on scheduling.
template <class Job>
void parallel_units(size_t count, Job job) {
    std::vector<std::exception_ptr> errors(count);
#pragma omp parallel
    {
        std::vector<float> buffer;
#pragma omp for schedule(dynamic, 1)
        for (size_t u = 0; u < count; u++) {
            try {
                job(u, buffer);
            } catch (...) {
                errors[u] = std::current_exception();
            }
        }
    }
    for (const std::exception_ptr & e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
}

// Walks bins from the largest down to the one holding the k-th largest; returns it and sets
// `above` to the count in higher bins.
size_t find_bin(const std::vector<size_t> & counts, size_t k, size_t base_above, size_t & above) {
    above = base_above;
    for (size_t b = counts.size(); b-- > 0;) {
        if (above + counts[b] >= k) {
            return b;
        }
        above += counts[b];
    }
    throw std::logic_error("model top-k: k exceeds the entries counted");
}

}  // namespace

std::vector<std::vector<ModelCut>> model_topk_cuts(const std::vector<size_t> & numel, const std::vector<double> & density,
                                                   const std::vector<double> & gamma, const DeltaSource & delta) {
    const size_t tensors = numel.size(), models = density.size();
    if (gamma.size() != models) {
        throw std::invalid_argument("model_topk_cuts: one gamma per model");
    }
    size_t total = 0;
    for (size_t n : numel) {
        total += n;
    }
    std::vector<ModelSearch> search(models);
    for (size_t m = 0; m < models; m++) {
        if (density[m] >= 1.0) {
            continue;  // mergekit: density >= 1 leaves the delta untouched
        }
        const OutlierCounts c = outlier_counts(total, density[m], gamma[m]);
        if (c.n_keep == 0) {
            throw InputError(fmt::format("density (model {}): {} keeps no entry of the model ({} entries)", m,
                                         density[m], total));
        }
        search[m].read = true;
        search[m].high.assign(kHighBins, 0);
        search[m].selections.resize(2);
        search[m].selections[0].k = c.n_top + c.n_keep;
        search[m].selections[1].k = c.n_top;
    }
    const size_t units = tensors * models;  // unit u: tensor u / models, model u % models
    std::mutex   lock;

    // Pass 1: counts by the top 16 bits.
    parallel_units(units, [&](size_t u, std::vector<float> & buffer) {
        const size_t t = u / models, m = u % models;
        if (!search[m].read) {
            return;
        }
        std::vector<uint32_t> local(kHighBins, 0);
        const float *         d = delta(t, m, buffer);
        if (!d) {
            local[0] = (uint32_t) numel[t];  // a zero delta: numel[t] zeros
        } else {
            for (size_t j = 0; j < numel[t]; j++) {
                local[magnitude_key(d[j]) >> 16]++;
            }
        }
        std::lock_guard<std::mutex> hold(lock);
        for (size_t b = 0; b < kHighBins; b++) {
            search[m].high[b] += local[b];
        }
    });
    for (ModelSearch & s : search) {
        for (Selection & sel : s.selections) {
            if (sel.k > 0) {
                sel.high = (uint32_t) find_bin(s.high, sel.k, 0, sel.above_high);
                sel.low.assign(kLowBins, 0);
            }
        }
    }

    // Pass 2: inside each selection's bin, counts by the low 16 bits.
    parallel_units(units, [&](size_t u, std::vector<float> & buffer) {
        const size_t t = u / models, m = u % models;
        if (!search[m].read) {
            return;
        }
        const float * d = delta(t, m, buffer);
        for (Selection & sel : search[m].selections) {
            if (sel.k == 0) {
                continue;
            }
            std::vector<uint32_t> local(kLowBins, 0);
            if (!d) {
                local[0] = sel.high == 0 ? (uint32_t) numel[t] : 0;
            } else {
                for (size_t j = 0; j < numel[t]; j++) {
                    const uint32_t key = magnitude_key(d[j]);
                    if ((key >> 16) == sel.high) {
                        local[key & 0xFFFFu]++;
                    }
                }
            }
            std::lock_guard<std::mutex> hold(lock);
            for (size_t b = 0; b < kLowBins; b++) {
                sel.low[b] += local[b];
            }
        }
    });
    bool pass3 = false;
    for (ModelSearch & s : search) {
        for (Selection & sel : s.selections) {
            if (sel.k == 0) {
                continue;
            }
            size_t       above = 0;
            const size_t low   = find_bin(sel.low, sel.k, sel.above_high, above);
            sel.key            = (sel.high << 16) | (uint32_t) low;
            sel.need           = sel.k - above;
            sel.all_equal      = sel.need == sel.low[low];
            sel.equal.assign(tensors, 0);
            pass3 |= !sel.all_equal;
        }
    }

    // Pass 3 (only where ties at the threshold are split): entries equal to it, per tensor.
    if (pass3) {
        parallel_units(units, [&](size_t u, std::vector<float> & buffer) {
            const size_t t = u / models, m = u % models;
            bool         needed = false;
            for (const Selection & sel : search[m].selections) {
                needed |= sel.k > 0 && !sel.all_equal;
            }
            if (!needed) {
                return;
            }
            const float * d = delta(t, m, buffer);
            for (Selection & sel : search[m].selections) {
                if (sel.k == 0 || sel.all_equal) {
                    continue;
                }
                size_t count = 0;
                if (!d) {
                    count = sel.key == 0 ? numel[t] : 0;
                } else {
                    for (size_t j = 0; j < numel[t]; j++) {
                        count += magnitude_key(d[j]) == sel.key ? 1 : 0;
                    }
                }
                sel.equal[t] = count;  // one unit per (tensor, model): no other writer
            }
        });
    }

    std::vector<std::vector<ModelCut>> cuts(tensors, std::vector<ModelCut>(models));
    for (size_t m = 0; m < models; m++) {
        const ModelSearch & s = search[m];
        if (!s.read) {
            for (size_t t = 0; t < tensors; t++) {
                cuts[t][m] = ModelCut{0.0f, kAll, INFINITY, 0};  // everything kept
            }
            continue;
        }
        // The `need` entries equal to a threshold that are kept: the first ones in tensor order.
        size_t keep_left = s.selections[0].need, drop_left = s.selections[1].need;
        for (size_t t = 0; t < tensors; t++) {
            const Selection & keep = s.selections[0];
            const Selection & drop = s.selections[1];
            ModelCut &        cut  = cuts[t][m];
            cut.threshold          = key_value(keep.key);
            cut.equal_kept         = keep.all_equal ? kAll : std::min(keep_left, keep.equal[t]);
            keep_left -= keep.all_equal ? 0 : cut.equal_kept;
            if (drop.k > 0) {
                cut.drop_threshold = key_value(drop.key);
                cut.drop_equal     = drop.all_equal ? kAll : std::min(drop_left, drop.equal[t]);
                drop_left -= drop.all_equal ? 0 : cut.drop_equal;
            }
        }
    }
    return cuts;
}

}  // namespace paft
