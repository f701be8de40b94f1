// paft export: a model (with LoRA adapters folded in) as one GGUF file that llama.cpp loads as
// is, or a PEFT LoRA adapter as llama.cpp's LoRA adapter file. Streams tensor by tensor: each
// tensor is read from the safetensors mapping, converted to f32 a block of rows at a time,
// adapters added, q/k rows reordered, quantized and appended to the file, so memory holds a few
// blocks of rows, never the model. The file is written atomically (nothing is left on failure).
#pragma once

#include "gguf/gguf_model.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace paft {

struct GgufExportOptions {
    std::string              model_dir;
    std::vector<std::string> adapters;      // PEFT folders, folded in as paft merge's weight-1 sum
    std::string              out;           // the .gguf file
    std::optional<ExportType> type;         // default: the model's own dtype (f32, f16 or bf16)
    bool                     adapter_only = false;  // write the one adapter as llama.cpp's LoRA file
    bool                     overwrite    = false;  // replace an existing output file
    int                      threads      = 0;      // 0: all cores
    bool                     progress     = true;   // progress on stderr
    std::string              name;                  // general.name; default: the model folder's name
};

struct GgufExportReport {
    size_t                        tensors = 0;
    uint64_t                      bytes   = 0;  // of the file
    double                        seconds = 0;
    std::map<std::string, size_t> types;  // ggml type name -> tensors
    std::string                   type;   // the export type used ("f16", "q4_k_m", ...; "lora")
    std::vector<std::string>      notes;  // what the user should know about the file (printed by paft export)
};

// Checks everything (model, tokenizer, adapters, output path) before writing; InputError naming
// the file, field or tensor when the input is bad or cannot be represented.
GgufExportReport export_gguf(const GgufExportOptions & options);

}  // namespace paft
