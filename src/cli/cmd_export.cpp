// paft export: a model (adapters folded in) as a GGUF file for llama.cpp, or a PEFT adapter as
// llama.cpp's LoRA adapter file.
#include "cli/commands.h"
#include "io/fs.h"
#include "io/output_lock.h"
#include "core/error.h"
#include "gguf/export.h"

#include <fmt/format.h>

namespace paft {

void register_export(CLI::App & app) {
    struct Flags {
        GgufExportOptions options;
        std::string       type;
    };
    auto   f   = std::make_shared<Flags>();
    auto * cmd = app.add_subcommand("export", "Write a model (LoRA adapters folded in) or one LoRA adapter as a GGUF "
                                              "file for llama.cpp");
    cmd->footer("Types: " + export_type_list() +
                " (q4_k_m: llama.cpp's mix; norms and biases stay f32).\nExamples:\n"
                "  paft export --model runs/merged --out merged-q8_0.gguf --type q8_0\n"
                "  paft export --model BASE --adapter runs/sft --out sft-f16.gguf --type f16\n"
                "  paft export --model BASE --adapter runs/sft --adapter-only --out sft-lora.gguf");
    cmd->add_option("--model", f->options.model_dir, "The Hugging Face model folder (config.json, safetensors, tokenizer)")
        ->required();
    cmd->add_option("--adapter", f->options.adapters, "A PEFT LoRA adapter over --model, folded in (repeat to add several)");
    cmd->add_option("--out", f->options.out, "The .gguf file to write")->required();
    cmd->add_option("--type", f->type, "Tensor type: " + export_type_list() + " (default: the model's own dtype; f32 "
                                       "for --adapter-only)");
    cmd->add_flag("--adapter-only", f->options.adapter_only,
                  "Write the one --adapter as llama.cpp's LoRA adapter file (llama.cpp's --lora) instead of a model");
    cmd->add_option("--name", f->options.name, "general.name (default: the folder's name)");
    cmd->add_option("--threads", f->options.threads, "Threads (0 = all cores)")->capture_default_str();
    cmd->add_flag("--overwrite", f->options.overwrite, "Replace an existing output file");
    cmd->callback([f]() {
        GgufExportOptions o = f->options;
        if (!f->type.empty()) {
            o.type = parse_export_type(f->type);
            if (!o.type) throw InputError(fmt::format("--type: '{}' is not one of {}", f->type, export_type_list()));
        }
        if (o.threads < 0) throw InputError(fmt::format("--threads: {} is negative", o.threads));
        std::vector<NamedPath> inputs{{o.model_dir, "--model"}};
        for (const std::string & a : o.adapters) inputs.push_back({a, "--adapter"});
        check_output_apart(o.out, "--out", inputs);
        OutputLock lock(o.out, LockPlace::beside);  // one export writes o.out at a time
        const GgufExportReport r = export_gguf(o);
        for (const std::string & note : r.notes) fmt::print(stderr, "note: {}\n", note);
        std::string types;
        for (const auto & [name, count] : r.types) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", count, name);
        const double mb = (double) r.bytes / 1e6;
        fmt::print("wrote {} ({}): {} tensors ({}), {} in {:.1f} s\n", o.out, r.type, r.tensors, types,
                   mb >= 1000 ? fmt::format("{:.2f} GB", mb / 1000) : fmt::format("{:.1f} MB", mb), r.seconds);
    });
}

}  // namespace paft
