// Dataset records as `paft sft` and `paft dpo` read them: a JSON Lines file (a JSON array file
// when the input starts with '['), every record encoded with the tiny model's tokenizer and the
// zephyr chat template, as SFT examples and as preference pairs.
#include "data/dataset.h"
#include "fuzz_util.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static const paft::Tokenizer    tokenizer = paft::Tokenizer::load(std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny");
    static const paft::ChatTemplate chat      = paft::ChatTemplate::builtin("zephyr");
    static const paft::ExampleEncoder encoder(tokenizer, &chat, paft::DataOptions{64, 16, true, true});
    const bool        array = size > 0 && data[0] == '[';
    const std::string path  = paft::fuzz::write_input(array ? "data.json" : "data.jsonl", data, size);
    paft::fuzz::expect_input_error_only([&] {
        paft::DataReport report;
        (void) paft::load_sft(path, encoder, report);
    });
    paft::fuzz::expect_input_error_only([&] {
        paft::DataReport report;
        (void) paft::load_preferences(path, encoder, report);
    });
    return 0;
}
