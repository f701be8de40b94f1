// The process's peak resident memory (Linux: VmHWM in /proc/self/status), and resetting it so that
// one stage of a long run can be measured on its own (/proc/self/clear_refs, value 5).
#pragma once

#include <cstdint>

namespace paft {

// Bytes; 0 where the system does not say.
uint64_t peak_resident_bytes();

// Starts a new peak at the current resident size. Returns false where the system does not allow it
// (the peak then covers the whole process so far).
bool reset_peak_resident();

}  // namespace paft
