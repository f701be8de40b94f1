#include "core/suggest.h"

#include <algorithm>
#include <limits>

namespace paft {
namespace {

size_t edit_distance(const std::string & a, const std::string & b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= a.size(); i++) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

}  // namespace

std::string closest_name(const std::string & name, const std::vector<std::string> & candidates) {
    std::string best;
    size_t      best_distance = std::numeric_limits<size_t>::max();
    for (const std::string & c : candidates) {
        size_t d = edit_distance(name, c);
        // A fragment or an extension of a key ("epochs", "lora_rank") is as good as a typo.
        const bool contains = (name.size() >= 4 && c.find(name) != std::string::npos) ||
                              (c.size() >= 4 && name.rfind(c, 0) == 0);
        if (contains) {
            d = std::min(d, (size_t) 2);
        }
        if (d < best_distance) {
            best_distance = d;
            best          = c;
        }
    }
    return best_distance <= std::max<size_t>(2, name.size() / 4) ? best : "";
}


}  // namespace paft
