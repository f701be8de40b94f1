// Learning-rate schedules with the values of Hugging Face's transformers schedulers
// (get_scheduler): the rate of optimizer step `step` (0-based) is base * factor(step).
//   constant              1
//   constant_with_warmup  step / warmup during warmup, then 1
//   linear                warmup, then (total - step) / (total - warmup), down to 0
//   cosine                warmup, then 0.5 * (1 + cos(pi * progress)), progress in [0, 1]
//   inverse_sqrt          warmup, then 1 / sqrt((step + shift) / timescale) (timescale = warmup,
//                         or 10000 without warmup; shift = timescale - warmup)
// As in transformers, plain `constant` ignores the warmup.
#pragma once

#include <string>

namespace paft {

enum class ScheduleType { constant, constant_with_warmup, linear, cosine, inverse_sqrt };

ScheduleType schedule_from_name(const std::string & name);  // InputError naming the choices
const char * schedule_name(ScheduleType type);

// Warmup steps as TrainingArguments.get_warmup_steps: warmup_steps if > 0, else
// ceil(total_steps * warmup_ratio).
long warmup_steps_for(long total_steps, long warmup_steps, double warmup_ratio);

struct Schedule {
    ScheduleType type         = ScheduleType::linear;  // TrainingArguments' default
    double       base_lr      = 2e-5;
    long         warmup_steps = 0;
    long         total_steps  = 1;
    double       factor(long step) const;
    double       lr(long step) const { return base_lr * factor(step); }
};

}  // namespace paft
