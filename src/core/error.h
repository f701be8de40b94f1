// Error types shared by the whole library. The program maps them to exit codes:
// InputError -> 2 (bad input or usage), anything else -> 1 (failure at run time).
#pragma once

#include <stdexcept>
#include <string>

namespace paft {

// The user's input is wrong: a file, field, tensor or option. The message names it.
struct InputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Something failed while running (I/O error, out of memory, ...).
struct RuntimeFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace paft
