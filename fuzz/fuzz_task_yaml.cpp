// An evaluation task YAML file (lm-eval's style) next to a small fixed dataset (docs.jsonl:
// question, choices, answer index, answer text), read and its documents formatted.
#include "eval/task_yaml.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static const bool docs = [] {
        paft::fuzz::write_text("docs.jsonl",
                               "{\"question\": \"2 + 2?\", \"choices\": [\"3\", \"4\"], \"label\": 1, \"answer\": \"4\"}\n"
                               "{\"question\": \"Sky?\", \"choices\": [\"blue\", \"red\"], \"label\": 0, \"answer\": \"blue\"}\n"
                               "{\"question\": \"1 + 1?\", \"choices\": [\"2\", \"5\"], \"label\": 0, \"answer\": \"2\"}\n");
        return true;
    }();
    (void) docs;
    const std::string path = paft::fuzz::write_input("task.yaml", data, size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::TaskSpec spec = paft::custom_task_spec(path);
        (void) paft::load_custom_task(spec, std::min(spec.default_num_fewshot, 2));
    });
    return 0;
}
