// Sparsification of task vectors: the selection rules mergekit's sparsify step applies to one
// model's delta of one tensor (magnitude top-k, breadcrumbs' outliers, DARE's random drop,
// DELLA's rank-based drop), on flat float buffers. docs/MERGING.md gives each rule's math.
//
// One ranking rule serves every magnitude selection (TIES' trim, breadcrumbs, DELLA's ranks and
// the whole-model top-k of model_topk.h): entries rank by |d|, larger first, and of two equal
// magnitudes the one with the lower flat index ranks first (a stable descending sort).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace paft {

enum class Rescale { none, l1, density };

// "none", "l1", "density", and mergekit's booleans "true" (= l1) and "false" (= none);
// InputError (naming the field "rescale") otherwise.
Rescale      parse_rescale(const std::string & name);
const char * rescale_name(Rescale rescale);

// The k top-ranked entries of a buffer: those with |d| > threshold, and the first `equal_kept`
// (in index order) of those with |d| == threshold. k == 0 is {INFINITY, 0}: nothing.
struct TopCut {
    float  threshold  = INFINITY;
    size_t equal_kept = 0;
};

// The cut of the k top-ranked entries of d [n], by std::nth_element on the magnitudes (O(n)).
// `scratch` is resized to n.
TopCut top_cut(const float * d, size_t n, size_t k, std::vector<float> & scratch);

// Zeroes d's entries outside `keep`, and those inside `drop` (drop's entries are a subset of
// keep's: breadcrumbs' largest share). A default TopCut as `drop` drops nothing.
void apply_cuts(float * d, size_t n, const TopCut & keep, const TopCut & drop);

// TIES' trim, in place: keeps the k top-ranked entries and zeroes the rest.
void magnitude_trim(float * delta, size_t n, size_t k, std::vector<float> & scratch);

// Breadcrumbs' counts for n entries (mergekit's magnitude_outliers): drop the n_top = int(gamma n)
// top-ranked entries, keep the next n_keep = int(density n), drop the rest; when n_top + n_keep
// exceeds n, n_top shrinks to n - n_keep. Kept: ranks [n_top, n_top + n_keep).
struct OutlierCounts {
    size_t n_top  = 0;
    size_t n_keep = 0;
};
OutlierCounts outlier_counts(size_t n, double density, double gamma);

// Random keep decisions (DARE, DELLA). Entry `index` of model `model`'s delta of tensor `tensor`
// is kept when u < p, u = the top 53 bits of hash_u64(stream, index, 0) as a fraction in
// [0, 1), stream = dare_stream(seed, tensor, model), p its keep probability. The decision
// depends on nothing else (not on threads or the order tensors are merged in), so a mask can be
// redrawn to check a merge.
uint64_t dare_stream(uint64_t seed, const std::string & tensor, size_t model);
bool     dare_keep(uint64_t stream, size_t index, double probability);
// Zeroes the dropped entries of delta [n] in place (keep probability `density` each).
void     dare_drop(float * delta, size_t n, double density, uint64_t stream);

// DELLA's keep probabilities for delta [rows, cols], ranked per row: the entry of ascending
// rank r (0 = smallest |d|) gets p = density - epsilon + 2 epsilon r / (cols - 1); a row of
// one entry gets density. `order` is scratch. O(n log cols); cols < 2^32.
void della_probabilities(const float * delta, size_t rows, size_t cols, double density, double epsilon,
                         std::vector<double> & p, std::vector<uint64_t> & order);

// The factor mergekit multiplies a sparsified delta by: l1 = ||before||_1 / ||after||_1 (1 when
// either is below 1e-7, mergekit's guard), density = 1 / density, none = 1.
double rescale_factor(Rescale rescale, double density, double l1_before, double l1_after);

double l1_norm(const float * x, size_t n);  // in double, summed in index order

}  // namespace paft
