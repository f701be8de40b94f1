// A PEFT adapter's adapter_config.json, for a base of two layers.
#include "fuzz_util.h"
#include "model/lora.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::LoraConfig config = paft::parse_adapter_config(text, "adapter_config.json", 2);
        (void) config.scale();
    });
    return 0;
}
