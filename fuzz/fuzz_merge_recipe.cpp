// A mergekit YAML config (`paft merge CONFIG`), read and its parameters checked. What is accepted
// must survive its own serialization: paft writes it next to the merged model.
#include "fuzz_util.h"
#include "merge/config.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string path = paft::fuzz::write_input("merge.yaml", data, size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::MergeConfig config = paft::read_merge_config(path);
        paft::check_merge_parameters(config);
        const std::string written = paft::fuzz::write_text("written.yaml", paft::merge_config_yaml(config));
        try {
            paft::check_merge_parameters(paft::read_merge_config(written));
        } catch (const paft::InputError &) {
            std::abort();  // a config we accepted, written out, is refused
        }
    });
    return 0;
}
