// Named model shapes for randomly initialised models (tests, benchmarks, pre-training).
#pragma once

#include "model/config.h"

#include <string>
#include <vector>

namespace paft {

// "tiny" (~0.3M parameters), "paft-tiny" (0.94M: hidden 128, 4 layers, vocab 512, 512 positions;
// the built-in default's base), "llama-20m" (22.7M: hidden 256, 8 layers, vocab 32000) and
// "llama-120m" (134M: hidden 768, 12 layers, vocab 32000), all Llama-shaped.
ModelConfig              model_preset(const std::string & name);
std::vector<std::string> model_preset_names();

}  // namespace paft
