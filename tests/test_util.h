// Small helpers shared by the tests.
#pragma once

#include <limits>

// max(a, b) that lets a NaN through (std::max drops it when it is the second argument), so an
// error measure built from it cannot hide NaN results.
inline double nan_max(double a, double b) {
    if (a != a || b != b) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    return a > b ? a : b;
}
