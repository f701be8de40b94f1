// llama.cpp as the tests' oracle of paft export (tools/llamacpp/oracle.mjs over node-llama-cpp's
// prebuilt build, installed in PAFT_LLAMACPP by the llamacpp_oracle fixture).
#pragma once

#include "io/fs.h"
#include "model/config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

// Runs one request through llama.cpp (see oracle.mjs's header for the requests); the request, the
// result and llama.cpp's log go through files in `work`. Test failure and an empty object on an
// error.
inline nlohmann::json llama_cpp(const nlohmann::json & request, const std::filesystem::path & work) {
    const std::string oracle = std::string(PAFT_SOURCE_DIR) + "/tools/llamacpp/oracle.mjs";
    const std::filesystem::path in = work / "oracle-request.json", out = work / "oracle-result.json",
                                err = work / "oracle-stderr";
    paft::write_file_atomic(in.string(), request.dump());
    const std::string cmd = "node '" + oracle + "' '" + PAFT_LLAMACPP + "' < '" + in.string() + "' > '" + out.string() +
                            "' 2> '" + err.string() + "'";
    const int                  rc     = std::system(cmd.c_str());
    const nlohmann::json       result = nlohmann::json::parse(paft::read_file(out.string()), nullptr, false);
    if (rc != 0 || result.is_discarded() || result.contains("error")) {
        ADD_FAILURE() << "llama.cpp oracle failed (rc " << rc << "): " << paft::read_file(out.string()) << "\n"
                      << paft::read_file(err.string());
        return nlohmann::json::object();
    }
    return result;
}

// A tiny model shape for export tests: hidden 64, 4 heads of 16 (`kv_heads` of them for k and v),
// MLP 128, `layers` layers; the vocabulary as the real model has it (its tokenizer's files go with it).
inline paft::ModelConfig tiny_gguf_config(paft::Architecture arch, int vocab, int layers, int kv_heads) {
    paft::ModelConfig c;
    c.architecture            = arch;
    c.architecture_name       = arch == paft::Architecture::Llama     ? "LlamaForCausalLM"
                                : arch == paft::Architecture::Mistral ? "MistralForCausalLM"
                                                                      : "Qwen2ForCausalLM";
    c.hidden_size             = 64;
    c.intermediate_size       = 128;
    c.num_layers              = layers;
    c.num_heads               = 4;
    c.num_kv_heads            = kv_heads;
    c.head_dim                = 16;
    c.vocab_size              = vocab;
    c.max_position_embeddings = 512;
    c.rms_norm_eps            = 1e-5f;
    return c;
}
