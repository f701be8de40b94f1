// A training recipe (`paft sft|dpo|orpo --config FILE`), applied over the defaults of the method
// its first byte picks and validated. What is accepted must survive its own serialization: the
// recipe paft writes next to an adapter is read back by --resume.
#include "fuzz_util.h"
#include "train/recipe.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const paft::Method methods[] = {paft::Method::sft, paft::Method::dpo, paft::Method::orpo};
    const paft::Method method    = methods[size > 0 ? data[0] % 3 : 0];
    const std::string  path      = paft::fuzz::write_input("recipe.yaml", data + (size > 0), size - (size > 0));
    paft::fuzz::expect_input_error_only([&] {
        paft::TrainOptions options = paft::TrainOptions::defaults(method);
        paft::apply_recipe(path, options);
        paft::validate(options);
        const std::string written = paft::fuzz::write_text("written.yaml", paft::recipe_yaml(options));
        try {
            paft::TrainOptions again = paft::TrainOptions::defaults(method);
            paft::apply_recipe(written, again);
            paft::validate(again);
        } catch (const paft::InputError &) {
            std::abort();  // a recipe we accepted, written out, is refused
        }
    });
    return 0;
}
