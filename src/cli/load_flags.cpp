#include "cli/load_flags.h"

#include "core/error.h"

namespace paft {

LoadOptions LoadFlags::options() const {
    try {
        LoadOptions options = model_load_options(torch_dtype, load_in_8bit, load_in_4bit, quant_type, double_quant);
        options.mmap        = mmap;
        return options;
    } catch (const InputError & e) {
        // The names are the recipe keys'; say them as flags.
        std::string message = e.what();
        for (auto [key, flag] : {std::pair{"torch_dtype", "--torch-dtype"}, {"load_in_8bit", "--load-in-8bit"},
                                 {"load_in_4bit", "--load-in-4bit"}, {"bnb_4bit_quant_type", "--bnb-4bit-quant-type"}}) {
            for (size_t at = message.find(key); at != std::string::npos; at = message.find(key, at + 1)) {
                message.replace(at, std::string(key).size(), flag);
            }
        }
        throw InputError(message);
    }
}

void add_load_flags(CLI::App & cmd, LoadFlags & f) {
    cmd.add_option("--torch-dtype", f.torch_dtype,
                   "Type the weights are kept in: auto (as stored), float32, bfloat16, float16")
        ->capture_default_str();
    cmd.add_flag("--load-in-8bit", f.load_in_8bit,
                 "Quantize the linear layers to 8 bits at load (Q8_0 blocks of 32; not bitsandbytes' LLM.int8)");
    cmd.add_flag("--load-in-4bit", f.load_in_4bit, "Quantize the linear layers to 4 bits at load (bitsandbytes' NF4/FP4)");
    cmd.add_option("--bnb-4bit-quant-type", f.quant_type, "4-bit type: nf4 or fp4")->capture_default_str();
    cmd.add_flag("--bnb-4bit-use-double-quant", f.double_quant, "Quantize the 4-bit blocks' absmax values too");
    cmd.add_flag("--mmap", f.mmap,
                 "Read weights stored in the type they are kept in from the file mapping (loads at once; computes "
                 "slower than the default copy into huge pages where the kernel pages out cold file pages)");
}

}  // namespace paft
