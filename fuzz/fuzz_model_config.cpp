// A model's config.json. What parses must also survive its own serialization: the config paft
// writes next to a model it made is read back by the next command.
#include "fuzz_util.h"
#include "model/config.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::ModelConfig config = paft::parse_model_config(text, "config.json");
        try {
            paft::parse_model_config(paft::model_config_to_json(config), "written config.json");
        } catch (const paft::InputError &) {
            std::abort();  // a config we accepted, written out, is refused
        }
    });
    return 0;
}
