// Sparsification of one task vector: a model's delta for one tensor, flattened to n floats, as
// mergekit's sparsify step treats it (per tensor, never per row or per model). docs/MERGING.md
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace paft {

enum class Rescale { none, l1, density };

// "none", "l1", "density"; InputError (naming the field "rescale") otherwise.
Rescale     parse_rescale(const std::string & name);
const char * rescale_name(Rescale rescale);

// TIES' trim, in place: keeps the k = int(density * n) entries of largest |delta| and zeroes the
// rest. Exactly k survive: among entries whose magnitude equals the k-th largest, the lowest flat
// indices are kept. `scratch` is resized to n (the magnitudes, reordered by std::nth_element).
// The caller handles density >= 1 (no trim) and k == 0 (refused).
void magnitude_trim(float * delta, size_t n, size_t k, std::vector<float> & scratch);

// DARE's drop. Entry `index` of model `model`'s delta of tensor `tensor` is kept when
// u < density, u = the top 53 bits of hash_u64(stream, index, 0) as a fraction in [0, 1), with
// stream = dare_stream(seed, tensor, model). The decision depends on nothing else (not on
// threads or the order tensors are merged in), so a mask can be redrawn to check a merge.
uint64_t dare_stream(uint64_t seed, const std::string & tensor, size_t model);
bool     dare_keep(uint64_t stream, size_t index, double density);
// Zeroes the dropped entries of delta [n] in place.
void     dare_drop(float * delta, size_t n, double density, uint64_t stream);

// The factor mergekit multiplies a sparsified delta by: l1 = ||before||_1 / ||after||_1 (1 when
// either is below 1e-7, mergekit's guard), density = 1 / density, none = 1.
double rescale_factor(Rescale rescale, double density, double l1_before, double l1_after);

double l1_norm(const float * x, size_t n);  // in double, summed in index order

}  // namespace paft
