// The flags of every command that loads a model for inference: the frozen weights' type, as
// transformers' from_pretrained and BitsAndBytesConfig name it (the training commands take the same
// names as recipe keys: torch_dtype, load_in_8bit, ...).
#pragma once

#include "model/model.h"

#include <CLI/CLI.hpp>

#include <string>

namespace paft {

struct LoadFlags {
    std::string torch_dtype  = "auto";
    bool        load_in_8bit = false;
    bool        load_in_4bit = false;
    std::string quant_type   = "nf4";
    bool        double_quant = false;
    bool        mmap         = false;

    LoadOptions options() const;  // InputError naming the flag for a bad combination
};

// --torch-dtype, --load-in-8bit, --load-in-4bit, --bnb-4bit-quant-type, --bnb-4bit-use-double-quant, --mmap
void add_load_flags(CLI::App & cmd, LoadFlags & flags);

}  // namespace paft
