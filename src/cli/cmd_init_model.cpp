// paft init-model: writes a randomly initialised Hugging Face model directory.
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/fs.h"
#include "io/output_lock.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/random_model.h"

#include <fmt/format.h>

#include <memory>

namespace paft {

void register_init_model(CLI::App & app) {
    struct Options {
        std::string preset = "tiny", config, out, dtype = "f32";
        uint64_t    seed   = 0;
        bool        overwrite = false;
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("init-model", "Write a randomly initialised model (Hugging Face layout)");
    cmd->add_option("--preset", opt->preset, "Model shape: tiny, paft-tiny, llama-20m, llama-120m")->capture_default_str();
    cmd->add_option("--config", opt->config, "A Hugging Face config.json to take the shape from instead");
    cmd->add_option("--out", opt->out, "Output model directory")->required();
    cmd->add_option("--dtype", opt->dtype, "Stored dtype: f32, bf16, f16")->capture_default_str();
    cmd->add_option("--seed", opt->seed, "Random seed")->capture_default_str();
    cmd->add_flag("--overwrite", opt->overwrite, "Replace the model files of an existing --out folder");
    cmd->callback([opt]() {
        check_output_apart(opt->out, "--out", {{opt->config, "--config"}});
        OutputLock lock(opt->out, LockPlace::beside);  // one writer of the folder (and its partial one)
        if (!opt->overwrite) {
            OutputLock::refuse_existing(opt->out, "--out");
        }
        ModelConfig config = opt->config.empty() ? model_preset(opt->preset)
                                                 : parse_model_config(read_file(opt->config), opt->config);
        DType dtype = opt->dtype == "f32"    ? DType::F32
                      : opt->dtype == "bf16" ? DType::BF16
                      : opt->dtype == "f16"  ? DType::F16
                                             : throw InputError(fmt::format("--dtype: unknown dtype '{}'", opt->dtype));
        // Streamed tensor by tensor: a model of any size is written without holding it in memory.
        // A bar (or plain lines) on stderr only for writes long enough to want one (>= 256 MB).
        const size_t              parameters = ParamLayout(config).size();
        const uint64_t            bytes      = parameters * dtype_size(dtype);
        std::unique_ptr<Progress> bar;
        if (bytes >= (256ull << 20)) {
            bar = std::make_unique<Progress>("init-model", (long) ((bytes + 999999) / 1000000), "MB");
        }
        write_random_model(config, opt->seed, dtype, opt->out, 5ull << 30, [&bar](uint64_t written, uint64_t) {
            if (bar) {
                bar->update((long) ((written + 999999) / 1000000));
            }
        });
        if (bar) {
            bar->finish();
        }
        fmt::print("wrote {} ({:.1f}M parameters, {}) to {}\n", config.architecture_name, parameters / 1e6, opt->dtype,
                   opt->out);
    });
}

}  // namespace paft
