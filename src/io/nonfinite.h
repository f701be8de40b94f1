// Non-finite values (NaN, +-Inf) in what paft reads and writes. A weight file holding them is
// almost always a broken export or a diverged run, and everything computed from it is garbage
// that still looks like numbers (a TIES merge even makes NaNs vanish: sign election drops them).
// So every float tensor read from safetensors or GGUF is checked, and a tensor with non-finite
// values is an InputError naming the file, the tensor and the count, unless the user said
// --allow-nonfinite (a flag of every command, which sets the process-wide policy here). Results
// (merged tensors, log-probabilities, losses) are checked where they are made.
#pragma once

#include "io/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace paft {

// The process-wide policy: false (the default) refuses non-finite values in inputs and results.
void set_nonfinite_allowed(bool allowed);
bool nonfinite_allowed();

// The number of NaN and Inf elements among `n` floats, or among the elements of a float dtype's
// stored bytes (F32, F16, BF16, F64; 0 for other dtypes).
size_t count_nonfinite(const float * values, size_t n);
size_t count_nonfinite(DType dtype, std::span<const uint8_t> bytes);

// Unless allowed: InputError "SOURCE: tensor NAME has N non-finite values (NaN or Inf) ..." when
// count > 0.
void check_finite_input(size_t count, const std::string & source, const std::string & tensor);

// Unless allowed: RuntimeFailure "WHAT: N non-finite values (NaN or Inf); nothing was written ..."
// when count > 0. For results: a merged tensor, a log-probability, a loss.
void check_finite_result(size_t count, const std::string & what);

}  // namespace paft
