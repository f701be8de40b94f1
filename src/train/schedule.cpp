#include "train/schedule.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

namespace paft {

namespace {

constexpr std::array<std::pair<const char *, ScheduleType>, 5> kSchedules = {{
    {"constant", ScheduleType::constant},
    {"constant_with_warmup", ScheduleType::constant_with_warmup},
    {"linear", ScheduleType::linear},
    {"cosine", ScheduleType::cosine},
    {"inverse_sqrt", ScheduleType::inverse_sqrt},
}};

// The linear ramp every warmup shares: step / max(1, warmup), for step < warmup.
double warmup_factor(long step, long warmup) {
    return (double) step / (double) std::max(1L, warmup);
}

// Fraction of the post-warmup steps done: (step - warmup) / max(1, total - warmup).
double progress(long step, long warmup, long total) {
    return (double) (step - warmup) / (double) std::max(1L, total - warmup);
}

}  // namespace

ScheduleType schedule_from_name(const std::string & name) {
    for (const auto & [n, type] : kSchedules) {
        if (name == n) {
            return type;
        }
    }
    std::vector<std::string> names;
    for (const auto & entry : kSchedules) {
        names.emplace_back(entry.first);
    }
    throw InputError(fmt::format("unknown schedule '{}' (expected one of {})", name, fmt::join(names, ", ")));
}

const char * schedule_name(ScheduleType type) {
    for (const auto & [n, t] : kSchedules) {
        if (t == type) {
            return n;
        }
    }
    return "?";
}

long warmup_steps_for(long total_steps, long warmup_steps, double warmup_ratio) {
    if (warmup_steps > 0) {
        return warmup_steps;
    }
    return (long) std::ceil((double) total_steps * warmup_ratio);
}

double Schedule::factor(long step) const {
    // `constant` has no warmup phase at all (transformers' get_scheduler returns before it).
    if (type == ScheduleType::constant) {
        return 1.0;
    }
    if (step < warmup_steps) {
        return warmup_factor(step, warmup_steps);
    }
    switch (type) {
        case ScheduleType::constant_with_warmup:
            return 1.0;
        case ScheduleType::linear:
            return std::max(0.0, (double) (total_steps - step) / (double) std::max(1L, total_steps - warmup_steps));
        case ScheduleType::cosine: {
            // num_cycles = 0.5: half a cosine period from 1 down to 0 over the post-warmup steps.
            // As in transformers, progress is not clamped: past total_steps the curve rises again.
            const double cycles = 0.5;
            const double p      = progress(step, warmup_steps, total_steps);
            return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * cycles * 2.0 * p)));
        }
        case ScheduleType::inverse_sqrt: {
            // timescale = warmup, or 10000 without warmup; shift makes the factor 1 at step = warmup.
            const long timescale = warmup_steps > 0 ? warmup_steps : 10000;
            const long shift     = timescale - warmup_steps;
            return 1.0 / std::sqrt((double) (step + shift) / (double) timescale);
        }
        case ScheduleType::constant:
            break;
    }
    return 1.0;
}

}  // namespace paft
