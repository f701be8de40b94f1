// A Hugging Face tokenizer.json (without tokenizer_config.json). What loads must then encode and
// decode text: a few fixed strings (ASCII, accents, CJK, emoji, digits, whitespace runs).
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string path = paft::fuzz::write_input("tokenizer.json", data, size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::Tokenizer tokenizer = paft::Tokenizer::from_files(path, "");
        for (const char * text : {"Hello, world! It's 2026.", "  caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n\n\tx",
                                  "<s>[INST] a </s>", ""}) {
            for (bool special : {false, true}) {
                const std::vector<int32_t> ids = tokenizer.encode(text, special);
                (void) tokenizer.decode(ids, false);
                (void) tokenizer.decode(ids, true);
            }
        }
        (void) tokenizer.decode({0, 1, 2, 3, -1, 1 << 30}, false);
    });
    return 0;
}
