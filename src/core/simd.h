// x86 vector intrinsics (immintrin.h) for the kernels built with -march=native. GCC 12's AVX-512
// intrinsics fill unused mask operands with a self-initialised placeholder that
// -Wmaybe-uninitialized reports once inlined (GCC bug 105593); the warning is located in the
// header's lines, so it is silenced for those alone.
#pragma once

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__F16C__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
