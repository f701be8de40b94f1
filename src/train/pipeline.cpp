#include "train/pipeline.h"

#include "core/communicator.h"
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

// What a pipeline needs beyond its options (validated already): the merge's method and parameters
// (its adapters do not exist yet), checked before the first step rather than after the training.
void check_merge_settings(const ParallelOptions & o) {
    if (o.merge_enabled) {
        check_merge_parameters(adapter_merge_config(o.sft.model, {o.sft.output_dir, o.preference.output_dir}, o.merge));
    }
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

namespace {

// The merge of the two saved adapters into the base, by the streaming engine of `paft merge`.
std::string merge_branches(const ParallelOptions & o) {
    fmt::print(stderr, "paft parallel: merging the two adapters into the base ({})\n", o.merge.method);
    MergeRunOptions run;
    run.out            = o.output_dir + "/model";
    run.threads        = every_core(o.threads);
    run.seed           = o.merge.seed;
    run.plain_progress = true;
    run.overwrite      = true;  // a resumed run merges again
    run_merge(adapter_merge_config(o.sft.model, {o.sft.output_dir, o.preference.output_dir}, o.merge), run);
    return run.out;
}

// Under mpirun: the first ranks train the SFT branch (branch_ranks, else half of them rounded
// down), the others the preference branch, each group data-parallel over its own communicator (a split of the world),
// so each adapter is the bytes of its standalone run with the group's ranks and threads. Rank 0
// writes the recipe and, when both branches are done, merges.
PipelineSummary run_parallel_ranks(const ParallelOptions & o, Communicator & ranks) {
    const auto t0 = std::chrono::steady_clock::now();
    if (ranks.size() < 2) {
        throw InputError("paft parallel under mpirun needs at least 2 ranks (one per branch)");
    }
    int sft_ranks = ranks.size() / 2;
    if (o.sft_ranks > 0) {
        if (o.sft_ranks + o.preference_ranks != ranks.size()) {
            throw InputError(fmt::format("branch_ranks (--branch-ranks) {}:{} asks for {} ranks; this job has {}",
                                         o.sft_ranks, o.preference_ranks, o.sft_ranks + o.preference_ranks,
                                         ranks.size()));
        }
        sft_ranks = o.sft_ranks;
    }
    const bool on_sft = ranks.rank() < sft_ranks;
    check_merge_settings(o);
    std::unique_ptr<Communicator> group = ranks.split(on_sft ? 0 : 1);
    std::shared_ptr<const Model>  base  = Model::load(o.sft.model, o.sft.load_options());
    const TrainOptions &          mine  = on_sft ? o.sft : o.preference;
    TrainData                     data  = load_train_data(mine, base->config());
    if (ranks.rank() == 0) {  // once its own inputs read
        save_recipe(o);
        fmt::print(stderr, "paft parallel: ranks: sft {}, {} {}\n", sft_ranks, method_name(o.preference.method),
                   ranks.size() - sft_ranks);
    }
    auto    backend = make_backend(o.threads);
    Trainer trainer(*backend, base, mine, std::move(data), backend->threads(), group.get());
    trainer.set_label(on_sft ? "sft" : method_name(o.preference.method));
    trainer.set_plain_progress(true);
    TrainSummary own = trainer.run();
    // Each branch's summary from its group's first rank (world ranks 0 and sft_ranks).
    PipelineSummary s;
    s.sft        = own;
    s.preference = own;
    ranks.broadcast(&s.sft, sizeof s.sft, 0);
    ranks.broadcast(&s.preference, sizeof s.preference, sft_ranks);
    ranks.barrier();  // both adapters are saved
    if (o.merge_enabled && ranks.rank() == 0) {
        s.model_dir = merge_branches(o);
    }
    ranks.barrier();
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

}  // namespace

PipelineSummary run_parallel(const ParallelOptions & o) {
    if (o.preference.model != o.sft.model) {
        throw InputError(fmt::format("paft parallel: both branches must start from the same model ('{}' and '{}')",
                                     o.sft.model, o.preference.model));
    }
    if (world().size() > 1) {
        return run_parallel_ranks(o, world());
    }
    const auto t0 = std::chrono::steady_clock::now();
    // Everything read and checked before anything is written.
    check_merge_settings(o);
    std::shared_ptr<const Model> base = Model::load(o.sft.model, o.sft.load_options());
    auto [sft_threads, pref_threads] = branch_threads(o);
    Branch sft, pref;
    sft.options  = o.sft;
    sft.data     = load_train_data(o.sft, base->config());
    sft.threads  = sft_threads;
    pref.options = o.preference;
    pref.data    = load_train_data(o.preference, base->config());
    pref.threads = pref_threads;
    save_recipe(o);
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
        s.model_dir = merge_branches(o);
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

PipelineSummary run_sequential(const ParallelOptions & o) {
    // Under mpirun both stages are shared among all the ranks, one after the other; rank 0 writes.
    Communicator & ranks = world();
    const auto     t0    = std::chrono::steady_clock::now();
    auto            backend = make_backend(o.threads);
    const int       threads = backend->threads();
    PipelineSummary s;
    std::shared_ptr<Model> model = Model::load(o.sft.model, o.sft.load_options());
    // Both stages' data read and checked before anything is written; the preference stage's
    // tokenizer is the base's (its model is the SFT model, saved with the base's tokenizer files).
    TrainOptions pref_options = o.preference;
    pref_options.model        = o.output_dir + "/sft-model";
    if (pref_options.tokenizer.empty()) {
        pref_options.tokenizer = o.preference.model;
    }
    TrainData sft_data  = load_train_data(o.sft, model->config());
    TrainData pref_data = load_train_data(pref_options, model->config());
    if (ranks.rank() == 0) {
        save_recipe(o);
    }
    {
        Trainer sft(*backend, model, o.sft, std::move(sft_data), threads, &ranks);
        sft.set_label("sft");
        s.sft = sft.run();
        fold_lora_adapter(*model, sft.adapter());
    }
    // The preference stage's base (and reference) is the SFT model, saved so that its adapter
    // has a base on disk (adapter_config.json names it).
    if (ranks.rank() == 0) {
        save_model_dir(*model, o.sft.model, pref_options.model);
    }
    ranks.barrier();
    Trainer pref(*backend, model, pref_options, std::move(pref_data), threads, &ranks);
    pref.set_label(method_name(o.preference.method));
    s.preference = pref.run();
    if (o.merge_enabled) {
        fold_lora_adapter(*model, pref.adapter());
        s.model_dir = o.output_dir + "/model";
        if (ranks.rank() == 0) {
            save_model_dir(*model, o.sft.model, s.model_dir);
        }
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

}  // namespace paft
