// paft synth: writes the seeded synthetic world (pre-training corpus, SFT and preference data,
// evaluation tasks, judge prompts, a trained tokenizer); docs/SYNTHETIC_WORLD.md.
#include "cli/commands.h"
#include "io/fs.h"
#include "synth/world.h"
#include "tokenizer/tokenizer.h"

#include "core/error.h"

#include <fmt/format.h>

#include <filesystem>

namespace paft {

void register_synth(CLI::App & app) {
    struct Options {
        std::string  out;
        WorldOptions world;
        int          heldout_people = -1;  // -1: a third of --people
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("synth", "Write the seeded synthetic world (corpus, SFT and preference data, "
                                             "eval tasks, judge prompts, tokenizer)");
    WorldOptions & w = opt->world;
    cmd->add_option("--out", opt->out, "Output folder (created if missing; its files are replaced)")->required();
    cmd->add_option("--seed", w.seed, "Random seed")->capture_default_str();
    cmd->add_option("--people", w.people, "People in the world")->capture_default_str();
    cmd->add_option("--heldout-people", opt->heldout_people,
                    "People only in the corpus, the tasks and the judge (default: a third of --people)");
    cmd->add_option("--corpus-docs", w.corpus_docs, "Pre-training documents")->capture_default_str();
    cmd->add_option("--sft-examples", w.sft_examples, "SFT conversations")->capture_default_str();
    cmd->add_option("--pref-examples", w.pref_examples, "Preference pairs")->capture_default_str();
    cmd->add_option("--judge-prompts", w.judge_prompts, "Held-out prompts for the win rate")->capture_default_str();
    cmd->add_option("--vocab-size", w.vocab_size, "Vocabulary of the trained BPE tokenizer")->capture_default_str();
    cmd->callback([opt]() {
        WorldOptions o   = opt->world;
        o.heldout_people = opt->heldout_people >= 0 ? opt->heldout_people : o.people / 3;
        if (path_exists(opt->out) && !is_folder(opt->out)) {
            throw InputError(fmt::format("--out {} is a file, not a folder", opt->out));
        }
        write_world(opt->out, o);
        const WorldFiles f         = world_files(opt->out);
        const Tokenizer  tokenizer = Tokenizer::load(f.tokenizer_dir);
        fmt::print("wrote {}: {} people ({} held out), 100 sums (40 held out)\n", opt->out, o.people, o.heldout_people);
        fmt::print("  corpus.jsonl  {} documents\n  sft.jsonl     {} conversations\n  prefs.jsonl   {} pairs\n",
                   o.corpus_docs, o.sft_examples, o.pref_examples);
        fmt::print("  judge.jsonl   {} prompts\n  tasks/        world_facts ({} documents), world_sums (40 documents)\n",
                   o.judge_prompts, 3 * o.heldout_people);
        fmt::print("  tokenizer/    byte-level BPE, vocabulary {}\n", tokenizer.vocab_size());
    });
}

}  // namespace paft
