// The recipe of `paft run` (a parallel recipe plus merges, evaluation, export and synth).
#include "fuzz_util.h"
#include "run/run_recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string path = paft::fuzz::write_input("run.yaml", data, size);
    paft::fuzz::expect_input_error_only([&] { (void) paft::read_run_recipe(path); });
    return 0;
}
