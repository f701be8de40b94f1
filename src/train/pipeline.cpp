#include "train/pipeline.h"

#include "core/error.h"
#include "io/fs.h"
#include "merge/config.h"
#include "merge/merge.h"
#include "train/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <thread>

namespace paft {
namespace fs = std::filesystem;

namespace {

// One branch on its own thread: its own backend with `threads` threads, set up exactly as the
// standalone command sets up its process, so the branch's adapter is bit-identical to the
// standalone run's with that thread count.
struct Branch {
    TrainOptions       options;
    TrainData          data;
    int                threads = 1;
    TrainSummary       summary;
    std::exception_ptr error;

    void run(std::shared_ptr<const Model> model, const std::string & label) {
        try {
            auto    backend = make_backend(threads);
            Trainer trainer(*backend, model, options, std::move(data), threads);
            trainer.set_label(label);
            trainer.set_plain_progress(true);  // two bars would overwrite each other
            summary = trainer.run();
        } catch (...) {
            error = std::current_exception();
        }
    }
};

// The run's resolved recipe, next to the branches' own.
void save_recipe(const ParallelOptions & o) {
    make_dirs(o.output_dir);
    write_file_atomic(o.output_dir + "/paft_recipe.yaml", recipe_yaml(o));
}

int every_core(int threads) {
    return threads > 0 ? threads : std::max(1, (int) std::thread::hardware_concurrency());
}

}  // namespace

DType saved_model_dtype(const ModelConfig & config) {
    return config.torch_dtype == "bfloat16" ? DType::BF16 : config.torch_dtype == "float16" ? DType::F16 : DType::F32;
}

void save_model_dir(const Model & model, const std::string & base_dir, const std::string & dir) {
    model.save(dir, saved_model_dtype(model.config()));
    copy_files_if_present(base_dir, dir, {"generation_config.json"});
    copy_files_if_present(base_dir, dir, kTokenizerFiles);
}

std::pair<int, int> branch_threads(const ParallelOptions & o) {
    const int total = every_core(o.threads);
    int       sft   = o.sft_threads > 0 ? o.sft_threads : std::max(1, total / 2);
    int       pref  = o.preference_threads > 0 ? o.preference_threads : std::max(1, total - sft);
    return {sft, pref};
}

PipelineSummary run_parallel(const ParallelOptions & o) {
    const auto t0 = std::chrono::steady_clock::now();
    save_recipe(o);
    std::shared_ptr<const Model> base = Model::load(o.sft.model, o.sft.load_options());
    if (o.preference.model != o.sft.model) {
        throw InputError(fmt::format("paft parallel: both branches must start from the same model ('{}' and '{}')",
                                     o.sft.model, o.preference.model));
    }
    auto [sft_threads, pref_threads] = branch_threads(o);
    Branch sft, pref;
    sft.options  = o.sft;
    sft.data     = load_train_data(o.sft, base->config());
    sft.threads  = sft_threads;
    pref.options = o.preference;
    pref.data    = load_train_data(o.preference, base->config());
    pref.threads = pref_threads;
    fmt::print(stderr, "paft parallel: threads: sft {}, {} {}\n", sft_threads, method_name(o.preference.method),
               pref_threads);
    std::thread sft_thread([&] { sft.run(base, "sft"); });
    std::thread pref_thread([&] { pref.run(base, method_name(o.preference.method)); });
    sft_thread.join();
    pref_thread.join();
    for (Branch * b : {&sft, &pref}) {
        if (b->error) {
            std::rethrow_exception(b->error);
        }
    }
    PipelineSummary s{sft.summary, pref.summary, "", 0};
    if (o.merge_enabled) {
        fmt::print(stderr, "paft parallel: merging the two adapters into the base ({})\n", o.merge.method);
        // The adapters as the branches saved them, merged by the streaming engine of `paft merge`.
        MergeRunOptions run;
        run.out       = o.output_dir + "/model";
        run.threads   = every_core(o.threads);
        run.seed      = o.merge.seed;
        run.plain_progress = true;
        run.overwrite = true;  // a resumed run merges again
        run_merge(adapter_merge_config(o.sft.model, {o.sft.output_dir, o.preference.output_dir}, o.merge), run);
        s.model_dir = run.out;
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

PipelineSummary run_sequential(const ParallelOptions & o) {
    const auto t0 = std::chrono::steady_clock::now();
    save_recipe(o);
    const int  threads = every_core(o.threads);
    auto       backend = make_backend(threads);
    PipelineSummary s;
    std::shared_ptr<Model> model = Model::load(o.sft.model, o.sft.load_options());
    {
        TrainData data = load_train_data(o.sft, model->config());
        Trainer   sft(*backend, model, o.sft, std::move(data), threads);
        sft.set_label("sft");
        s.sft = sft.run();
        fold_lora_adapter(*model, sft.adapter());
    }
    // The preference stage's base (and reference) is the SFT model, saved so that its adapter
    // has a base on disk (adapter_config.json names it).
    const std::string sft_model = o.output_dir + "/sft-model";
    save_model_dir(*model, o.sft.model, sft_model);
    TrainOptions pref_options = o.preference;
    pref_options.model        = sft_model;
    if (pref_options.tokenizer.empty()) {
        pref_options.tokenizer = o.preference.model;
    }
    TrainData data = load_train_data(pref_options, model->config());
    Trainer   pref(*backend, model, pref_options, std::move(data), threads);
    pref.set_label(method_name(o.preference.method));
    s.preference = pref.run();
    if (o.merge_enabled) {
        fold_lora_adapter(*model, pref.adapter());
        s.model_dir = o.output_dir + "/model";
        save_model_dir(*model, o.sft.model, s.model_dir);
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

}  // namespace paft
