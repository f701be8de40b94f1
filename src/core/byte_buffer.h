// Values packed into a byte string and read back, for what ranks send each other (answers,
// generations): fixed-size values in this machine's layout (every rank of a job runs the same
// build), strings after their length.
#pragma once

#include "core/error.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace paft {

template <class T>
void append_value(std::string & out, T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    out.append(reinterpret_cast<const char *>(&value), sizeof value);
}

inline void append_text(std::string & out, const std::string & text) {
    append_value(out, (uint64_t) text.size());
    out += text;
}

// The value at `at`, which moves past it; RuntimeFailure when the bytes end first.
template <class T>
T read_value(const std::string & in, size_t & at) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (at > in.size() || in.size() - at < sizeof(T)) {
        throw RuntimeFailure("a rank's message is cut short");
    }
    T value;
    std::memcpy(&value, in.data() + at, sizeof value);
    at += sizeof value;
    return value;
}

inline std::string read_text(const std::string & in, size_t & at) {
    const auto length = read_value<uint64_t>(in, at);
    if (length > in.size() - at) {
        throw RuntimeFailure("a rank's message is cut short");
    }
    at += length;
    return in.substr(at - length, length);
}

}  // namespace paft
