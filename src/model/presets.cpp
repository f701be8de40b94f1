#include "model/presets.h"

#include "core/error.h"

#include <fmt/format.h>

namespace paft {
namespace {

ModelConfig llama(int hidden, int intermediate, int layers, int heads, int kv_heads, int vocab) {
    ModelConfig c;
    c.hidden_size             = hidden;
    c.intermediate_size       = intermediate;
    c.num_layers              = layers;
    c.num_heads               = heads;
    c.num_kv_heads            = kv_heads;
    c.head_dim                = hidden / heads;
    c.vocab_size              = vocab;
    c.max_position_embeddings = 2048;
    c.rms_norm_eps            = 1e-5f;
    c.bos_token_id            = 1;
    c.eos_token_id            = 2;
    return c;
}

}  // namespace

std::vector<std::string> model_preset_names() {
    return {"tiny", "paft-tiny", "llama-20m", "llama-120m"};
}

ModelConfig model_preset(const std::string & name) {
    if (name == "tiny") {
        return llama(64, 172, 2, 4, 2, 1000);
    }
    if (name == "paft-tiny") {  // the built-in default's base model, pre-trained by `paft pretrain`
        ModelConfig c             = llama(128, 352, 4, 4, 4, 512);
        c.max_position_embeddings = 512;
        return c;
    }
    if (name == "llama-20m") {
        return llama(256, 688, 8, 8, 8, 32000);
    }
    if (name == "llama-120m") {
        return llama(768, 2048, 12, 12, 12, 32000);
    }
    throw InputError(fmt::format("unknown model preset '{}' (known: tiny, paft-tiny, llama-20m, llama-120m)", name));
}

}  // namespace paft
