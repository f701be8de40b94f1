// Learning-rate schedules against values computed by hand from transformers' definitions
// (transformers/optimization.py), with warmup w and total n steps:
//   warmup (step < w)      step / max(1, w)
//   constant               1 (no warmup at all)
//   constant_with_warmup   1
//   linear                 max(0, (n - step) / max(1, n - w))
//   cosine                 max(0, 0.5 (1 + cos(pi * 2 * 0.5 * progress))), progress = (step - w) / max(1, n - w)
//   inverse_sqrt           1 / sqrt((step + shift) / timescale), timescale = w or 10000, shift = timescale - w
// and warmup steps as TrainingArguments.get_warmup_steps.
#include "train/schedule.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>

using namespace paft;

namespace {

constexpr double kPi = std::numbers::pi;

double factor(ScheduleType type, long warmup, long total, long step) {
    Schedule s;
    s.type         = type;
    s.warmup_steps = warmup;
    s.total_steps  = total;
    return s.factor(step);
}

TEST(Schedule, NamesRoundTrip) {
    for (const char * name : {"constant", "constant_with_warmup", "linear", "cosine", "inverse_sqrt"}) {
        EXPECT_STREQ(schedule_name(schedule_from_name(name)), name);
    }
    EXPECT_EQ(schedule_from_name("cosine"), ScheduleType::cosine);
    EXPECT_EQ(Schedule{}.type, ScheduleType::linear);  // TrainingArguments' default
}

TEST(Schedule, UnknownNameListsTheChoices) {
    expect_input_error([] { schedule_from_name("cosine_with_restarts"); },
                       {"'cosine_with_restarts'", "constant, constant_with_warmup, linear, cosine, inverse_sqrt"});
    expect_input_error([] { schedule_from_name("Linear"); }, {"'Linear'"});
    expect_input_error([] { schedule_from_name(""); }, {"''"});
}

// get_scheduler returns the plain constant schedule before it looks at the warmup.
TEST(Schedule, ConstantIgnoresWarmup) {
    for (long step : {0L, 1L, 2L, 5L, 100L}) {
        EXPECT_EQ(factor(ScheduleType::constant, 3, 10, step), 1.0) << step;
    }
}

TEST(Schedule, ConstantWithWarmup) {
    const auto f = [](long step) { return factor(ScheduleType::constant_with_warmup, 4, 10, step); };
    EXPECT_DOUBLE_EQ(f(0), 0.0);
    EXPECT_DOUBLE_EQ(f(1), 0.25);
    EXPECT_DOUBLE_EQ(f(3), 0.75);
    EXPECT_DOUBLE_EQ(f(4), 1.0);
    EXPECT_DOUBLE_EQ(f(50), 1.0);  // no end: past total_steps too
    EXPECT_DOUBLE_EQ(factor(ScheduleType::constant_with_warmup, 0, 10, 0), 1.0);
}

TEST(Schedule, Linear) {
    const auto f = [](long step) { return factor(ScheduleType::linear, 2, 10, step); };
    EXPECT_DOUBLE_EQ(f(0), 0.0);
    EXPECT_DOUBLE_EQ(f(1), 0.5);         // 1 / 2
    EXPECT_DOUBLE_EQ(f(2), 1.0);         // (10 - 2) / 8
    EXPECT_DOUBLE_EQ(f(5), 5.0 / 8.0);   // (10 - 5) / 8
    EXPECT_DOUBLE_EQ(f(9), 1.0 / 8.0);
    EXPECT_DOUBLE_EQ(f(10), 0.0);
    EXPECT_DOUBLE_EQ(f(12), 0.0);        // max(0, -2 / 8)
    // Without warmup: step 0 runs at the full rate.
    EXPECT_DOUBLE_EQ(factor(ScheduleType::linear, 0, 10, 0), 1.0);
    EXPECT_DOUBLE_EQ(factor(ScheduleType::linear, 0, 10, 3), 0.7);
    // Warmup as long as the run: max(1, n - w) keeps the division defined.
    EXPECT_DOUBLE_EQ(factor(ScheduleType::linear, 5, 5, 5), 0.0);
    EXPECT_DOUBLE_EQ(factor(ScheduleType::linear, 5, 5, 4), 0.8);
}

TEST(Schedule, Cosine) {
    const auto f = [](long step) { return factor(ScheduleType::cosine, 2, 10, step); };
    EXPECT_DOUBLE_EQ(f(0), 0.0);
    EXPECT_DOUBLE_EQ(f(1), 0.5);
    EXPECT_DOUBLE_EQ(f(2), 1.0);                                         // progress 0
    EXPECT_DOUBLE_EQ(f(5), 0.5 * (1.0 + std::cos(kPi * 3.0 / 8.0)));     // progress 3/8
    EXPECT_NEAR(f(6), 0.5, 1e-15);                                       // progress 1/2
    EXPECT_DOUBLE_EQ(f(9), 0.5 * (1.0 + std::cos(kPi * 7.0 / 8.0)));
    EXPECT_NEAR(f(10), 0.0, 1e-15);                                      // progress 1
    // Past the end transformers does not clamp the progress: the half cosine rises again.
    EXPECT_NEAR(f(14), 0.5, 1e-15);                                      // progress 3/2
    EXPECT_DOUBLE_EQ(factor(ScheduleType::cosine, 0, 4, 1), 0.5 * (1.0 + std::cos(kPi / 4.0)));
}

TEST(Schedule, InverseSqrt) {
    const auto f = [](long step) { return factor(ScheduleType::inverse_sqrt, 4, 100, step); };
    EXPECT_DOUBLE_EQ(f(0), 0.0);
    EXPECT_DOUBLE_EQ(f(2), 0.5);
    EXPECT_DOUBLE_EQ(f(4), 1.0);           // 1 / sqrt(4 / 4)
    EXPECT_DOUBLE_EQ(f(9), 2.0 / 3.0);     // 1 / sqrt(9 / 4)
    EXPECT_DOUBLE_EQ(f(16), 0.5);          // 1 / sqrt(16 / 4)
    EXPECT_DOUBLE_EQ(f(400), 0.1);         // no end at total_steps
    // Without warmup: timescale 10000, shift 10000.
    const auto g = [](long step) { return factor(ScheduleType::inverse_sqrt, 0, 100, step); };
    EXPECT_DOUBLE_EQ(g(0), 1.0);
    EXPECT_DOUBLE_EQ(g(30000), 0.5);       // 1 / sqrt(40000 / 10000)
    EXPECT_DOUBLE_EQ(g(5), 1.0 / std::sqrt(10005.0 / 10000.0));
}

TEST(Schedule, RateIsBaseTimesFactor) {
    Schedule s;
    s.type         = ScheduleType::linear;
    s.base_lr      = 2e-4;
    s.warmup_steps = 2;
    s.total_steps  = 10;
    EXPECT_DOUBLE_EQ(s.lr(1), 1e-4);
    EXPECT_DOUBLE_EQ(s.lr(5), 2e-4 * 5.0 / 8.0);
}

// get_warmup_steps: warmup_steps when > 0, else ceil(total * ratio) in double arithmetic.
TEST(Schedule, WarmupSteps) {
    EXPECT_EQ(warmup_steps_for(100, 0, 0.1), 10);
    EXPECT_EQ(warmup_steps_for(101, 0, 0.1), 11);   // ceil(10.1)
    EXPECT_EQ(warmup_steps_for(10, 0, 0.03), 1);    // ceil(0.3)
    EXPECT_EQ(warmup_steps_for(3, 0, 0.1), 1);      // ceil(0.30000000000000004)
    EXPECT_EQ(warmup_steps_for(1000, 0, 0.0), 0);
    EXPECT_EQ(warmup_steps_for(100, 5, 0.5), 5);    // explicit steps win over the ratio
    EXPECT_EQ(warmup_steps_for(100, 0, 1.0), 100);
}

}  // namespace
