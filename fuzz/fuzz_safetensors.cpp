// The safetensors reader: an 8-byte header length, the JSON header (dtypes, shapes, offsets,
// __metadata__), the data section. Every tensor the file lists is then read as f32, which walks
// each byte range the header accepted.
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string path = paft::fuzz::write_input("model.safetensors", data, size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::TensorStore store = paft::TensorStore::open_file(path);
        double                  sum   = 0;
        for (const std::string & name : store.names()) {
            std::vector<int64_t> shape;
            for (float v : store.read_f32_any(name, &shape)) {
                sum += v == v ? 0.0 : 1.0;  // touch every value (NaN-safe)
            }
        }
        (void) sum;
    });
    return 0;
}
