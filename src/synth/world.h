// paft synth: a seeded, made-up world whose text a tiny model can learn on a laptop, with the data
// to pre-train it, fine-tune it (SFT and preferences), evaluate it and judge it; docs/SYNTHETIC_WORLD.md.
//
// People (made-up names) each have a favorite color, a pet and a town; sums "A plus B is C." for
// A, B in 0..9. The first people and 60 of the 100 sums are "train": only they appear in the SFT
// and preference data. The others are "held-out": they appear only in the pre-training corpus,
// the evaluation tasks and the judge's prompts, so what those measure is the chat skill applied
// to knowledge from pre-training, not memorised answers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace paft {

struct WorldOptions {
    uint64_t seed           = 0;
    int      people         = 48;    // of which the last `heldout_people` are held out
    int      heldout_people = 16;
    int      corpus_docs    = 6000;  // pre-training documents, 3-6 sentences each
    int      sft_examples   = 2000;
    int      pref_examples  = 2000;
    int      judge_prompts  = 64;
    int      vocab_size     = 512;   // of the trained BPE tokenizer (fewer when no pair repeats)
};

// Where write_world puts each file in `out_dir`.
struct WorldFiles {
    std::string              corpus;         // corpus.jsonl: {"text"} documents
    std::string              sft;            // sft.jsonl: {"messages"}
    std::string              prefs;          // prefs.jsonl: {"prompt", "chosen", "rejected"}
    std::string              judge;          // judge.jsonl: {"prompt", "answer", "reference"}
    std::string              world_json;     // world.json: the facts and the splits, for people
    std::string              tokenizer_dir;  // tokenizer/: tokenizer.json, tokenizer_config.json
    std::vector<std::string> task_files;     // tasks/world_facts.yaml, tasks/world_sums.yaml
};

WorldFiles world_files(const std::string & out_dir);

// The zephyr-like chat template written into the tokenizer's config.
extern const char * const kWorldChatTemplate;

// Writes every file of the world for `options` into `out_dir` (created if missing; existing files
// replaced), each atomically. The same options give the same bytes. InputError for options out of
// range, naming the option.
void write_world(const std::string & out_dir, const WorldOptions & options);

}  // namespace paft
