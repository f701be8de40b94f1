#include "synth/world.h"

#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "synth/judge.h"
#include "template/chat_template.h"
#include "tokenizer/bpe_trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace paft {

const char * const kWorldChatTemplate =
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

namespace {

using ojson = nlohmann::ordered_json;

const std::vector<std::string> kColors = {"red", "blue", "green", "yellow", "purple", "orange", "white", "black"};
const std::vector<std::string> kPets   = {"cat", "dog", "horse", "rabbit", "parrot", "fish", "turtle", "goat"};
const std::vector<std::string> kSpecialTokens = {"<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"};
constexpr int kTowns        = 8;
constexpr int kHeldoutSums  = 40;  // of the 100 (A, B) pairs
constexpr int kMaxPeople    = 1000;
constexpr int kMaxVocabSize = 1 << 16;

// Independent random streams, so that e.g. more corpus documents leave the SFT data unchanged.
enum Stream : uint64_t { kNames = 1, kAttributes, kSumSplit, kCorpus, kSft, kPrefs, kFactsTask, kSumsTask, kJudge };

Random stream(const WorldOptions & o, Stream s) { return Random(hash_u64(o.seed, s, 0)); }

size_t below(Random & rng, size_t n) { return (size_t) (rng.next_u64() % n); }

template <typename T> void shuffle(std::vector<T> & items, Random & rng) {
    for (size_t i = items.size(); i > 1; i--) {
        std::swap(items[i - 1], items[below(rng, i)]);
    }
}

struct Person {
    std::string name;
    int         color = 0, pet = 0, town = 0;  // indices into kColors, kPets, World::towns
    bool        heldout = false;
};

struct World {
    std::vector<std::string>         towns;
    std::vector<Person>              people;  // train people first, then held-out
    std::vector<std::pair<int, int>> train_sums, heldout_sums;  // (A, B), sorted
};

enum class Kind { color, pet, town, sum };

// One fact of the world, the unit of every sentence, question and answer.
struct Fact {
    Kind kind;
    int  person = 0;  // color, pet, town
    int  a = 0, b = 0;  // sum
};

// ---- names ------------------------------------------------------------------------------------

// Whether a lowercase name is fit: it has one of the letters k, v, z (rare in English words of
// this shape), is none of the world's own words ("likes", "lives"), and has no unfortunate syllable.
bool acceptable_name(const std::string & name) {
    static const char * const world_words[] = {"likes", "lives", "favorite", "have", "animal", "home", "town", "color"};
    static const char * const unfortunate[] = {"fuk", "fak", "dik", "kok", "kak", "nig", "fag", "pis", "tit", "sek"};
    if (name.find_first_of("kvz") == std::string::npos) {
        return false;
    }
    for (const char * w : world_words) {
        if (name == w) {
            return false;
        }
    }
    for (const char * u : unfortunate) {
        if (name.find(u) != std::string::npos) {
            return false;
        }
    }
    return true;
}

// Two syllables (consonant, vowel, optional consonant), capitalised: "Zorbin", "Kelvaz".
std::string made_up_name(Random & rng) {
    static const char * const onsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"};
    static const char * const vowels[] = {"a", "e", "i", "o", "u"};
    static const char * const codas[]  = {"", "", "n", "r", "l", "s", "k", "z"};
    for (;;) {
        std::string name;
        for (int s = 0; s < 2; s++) {
            name += onsets[below(rng, std::size(onsets))];
            name += vowels[below(rng, std::size(vowels))];
            name += codas[below(rng, std::size(codas))];
        }
        if (acceptable_name(name)) {
            name[0] = (char) (name[0] - 'a' + 'A');
            return name;
        }
    }
}

// `count` distinct names, none in `taken` (which they join).
std::vector<std::string> made_up_names(Random & rng, int count, std::set<std::string> & taken) {
    std::vector<std::string> names;
    while ((int) names.size() < count) {
        std::string name = made_up_name(rng);
        if (taken.insert(name).second) {
            names.push_back(std::move(name));
        }
    }
    return names;
}

// ---- the world --------------------------------------------------------------------------------

// Each attribute's values spread evenly over the people (every value used people/8 times, give
// or take one), in a seeded order.
std::vector<int> balanced_values(Random & rng, int people, int values) {
    std::vector<int> v(people);
    for (int i = 0; i < people; i++) {
        v[i] = i % values;
    }
    shuffle(v, rng);
    return v;
}

World make_world(const WorldOptions & o) {
    World                 w;
    std::set<std::string> taken;
    Random                names = stream(o, kNames);
    w.towns                     = made_up_names(names, kTowns, taken);
    const auto people           = made_up_names(names, o.people, taken);
    Random     attributes       = stream(o, kAttributes);
    const auto colors = balanced_values(attributes, o.people, (int) kColors.size());
    const auto pets   = balanced_values(attributes, o.people, (int) kPets.size());
    const auto towns  = balanced_values(attributes, o.people, kTowns);
    for (int i = 0; i < o.people; i++) {
        w.people.push_back({people[i], colors[i], pets[i], towns[i], i >= o.people - o.heldout_people});
    }
    std::vector<std::pair<int, int>> sums;
    for (int a = 0; a < 10; a++) {
        for (int b = 0; b < 10; b++) {
            sums.emplace_back(a, b);
        }
    }
    Random split = stream(o, kSumSplit);
    shuffle(sums, split);
    w.heldout_sums.assign(sums.begin(), sums.begin() + kHeldoutSums);
    w.train_sums.assign(sums.begin() + kHeldoutSums, sums.end());
    std::sort(w.heldout_sums.begin(), w.heldout_sums.end());
    std::sort(w.train_sums.begin(), w.train_sums.end());
    return w;
}

// The facts of the people in [first, last) (each attribute) and of the given sums.
std::vector<Fact> facts_of(int first, int last, const std::vector<std::pair<int, int>> & sums) {
    std::vector<Fact> facts;
    for (int p = first; p < last; p++) {
        for (Kind k : {Kind::color, Kind::pet, Kind::town}) {
            facts.push_back({k, p, 0, 0});
        }
    }
    for (const auto & [a, b] : sums) {
        facts.push_back({Kind::sum, 0, a, b});
    }
    return facts;
}

std::vector<Fact> train_facts(const World & w, const WorldOptions & o) {
    return facts_of(0, o.people - o.heldout_people, w.train_sums);
}

// ---- sentences --------------------------------------------------------------------------------

const std::string & name_of(const World & w, const Fact & f) { return w.people[f.person].name; }

std::string value_of(const World & w, const Fact & f) {
    const Person & p = w.people[f.person];
    switch (f.kind) {
        case Kind::color: return kColors[p.color];
        case Kind::pet: return kPets[p.pet];
        case Kind::town: return w.towns[p.town];
        case Kind::sum: break;
    }
    return std::to_string(f.a + f.b);
}

// Every value a fact of this kind can have: the multiple-choice options and the wrong answers.
std::vector<std::string> values_of(const World & w, Kind kind) {
    switch (kind) {
        case Kind::color: return kColors;
        case Kind::pet: return kPets;
        case Kind::town: return w.towns;
        case Kind::sum: break;
    }
    std::vector<std::string> numbers;
    for (int c = 0; c <= 18; c++) {
        numbers.push_back(std::to_string(c));
    }
    return numbers;
}

// The answer sentence up to its value: "Zorbin's favorite color is", "3 plus 4 is".
std::string answer_stem(const World & w, const Fact & f) {
    switch (f.kind) {
        case Kind::color: return name_of(w, f) + "'s favorite color is";
        case Kind::pet: return name_of(w, f) + " has a";
        case Kind::town: return name_of(w, f) + " lives in";
        case Kind::sum: break;
    }
    return fmt::format("{} plus {} is", f.a, f.b);
}

// The answer sentence with `value` (the right one, or a wrong one for rejected answers).
std::string answer_with(const World & w, const Fact & f, const std::string & value) {
    return answer_stem(w, f) + " " + value + ".";
}

std::string answer(const World & w, const Fact & f) { return answer_with(w, f, value_of(w, f)); }

constexpr int kQuestionPhrasings = 2;

std::string question(const World & w, const Fact & f, int phrasing) {
    const bool first = phrasing % kQuestionPhrasings == 0;
    switch (f.kind) {
        case Kind::color:
            return first ? fmt::format("What is {}'s favorite color?", name_of(w, f))
                         : fmt::format("Which color does {} like best?", name_of(w, f));
        case Kind::pet:
            return first ? fmt::format("What pet does {} have?", name_of(w, f))
                         : fmt::format("Which animal is {}'s pet?", name_of(w, f));
        case Kind::town:
            return first ? fmt::format("Where does {} live?", name_of(w, f))
                         : fmt::format("In which town does {} live?", name_of(w, f));
        case Kind::sum: break;
    }
    return first ? fmt::format("What is {} plus {}?", f.a, f.b) : fmt::format("How much is {} plus {}?", f.a, f.b);
}

// The pre-training corpus's ways of stating a fact; phrasing 0 is the answer sentence itself.
constexpr int kFactPhrasings = 3;

std::string fact_sentence(const World & w, const Fact & f, int phrasing) {
    const std::string n = f.kind == Kind::sum ? std::string() : name_of(w, f);
    const std::string   v = value_of(w, f);
    switch (f.kind == Kind::sum ? 0 : phrasing % kFactPhrasings) {
        case 0: return answer(w, f);
        case 1:
            return f.kind == Kind::color ? fmt::format("The favorite color of {} is {}.", n, v)
                   : f.kind == Kind::pet ? fmt::format("{}'s pet is a {}.", n, v)
                                         : fmt::format("{}'s home town is {}.", n, v);
        default:
            return f.kind == Kind::color ? fmt::format("{} likes {} best.", n, v)
                   : f.kind == Kind::pet ? fmt::format("The pet of {} is a {}.", n, v)
                                         : fmt::format("{} is from {}.", n, v);
    }
}

// Items in seeded order, reshuffled after each pass, so every item comes once per pass (coverage
// is guaranteed, not left to chance).
class Cycle {
public:
    Cycle(std::vector<Fact> items, Random & rng) : items_(std::move(items)), rng_(rng) { shuffle(items_, rng_); }
    // The next fact, and which pass over the items it belongs to.
    std::pair<const Fact &, int> next() {
        if (at_ == items_.size()) {
            shuffle(items_, rng_);
            at_ = 0;
            pass_++;
        }
        return {items_[at_++], pass_};
    }

private:
    std::vector<Fact> items_;
    Random &          rng_;
    size_t            at_   = 0;
    int               pass_ = 0;
};

// ---- files ------------------------------------------------------------------------------------

ojson user(const std::string & content) { return {{"role", "user"}, {"content", content}}; }
ojson assistant(const std::string & content) { return {{"role", "assistant"}, {"content", content}}; }

std::string jsonl(const std::vector<ojson> & records) {
    std::string out;
    for (const ojson & r : records) {
        out += r.dump() + "\n";
    }
    return out;
}

// Documents of 3-6 fact sentences; the facts of every person and every sum in turn, each fact's
// phrasings in turn from pass to pass.
std::vector<ojson> corpus_docs(const World & w, const WorldOptions & o) {
    Random            rng = stream(o, kCorpus);
    std::vector<Fact> all = facts_of(0, o.people, {});
    for (const auto * sums : {&w.train_sums, &w.heldout_sums}) {
        for (const auto & [a, b] : *sums) {
            all.push_back({Kind::sum, 0, a, b});
        }
    }
    Cycle              facts(all, rng);
    std::vector<ojson> docs;
    for (int d = 0; d < o.corpus_docs; d++) {
        const int   sentences = 3 + (int) below(rng, 4);
        std::string text;
        for (int s = 0; s < sentences; s++) {
            const auto [fact, pass] = facts.next();
            if (s > 0) {
                text += ' ';
            }
            text += fact_sentence(w, fact, pass + fact.person + fact.a);
        }
        docs.push_back({{"text", text}});
    }
    return docs;
}

std::vector<ojson> sft_records(const World & w, const WorldOptions & o) {
    Random             rng = stream(o, kSft);
    Cycle              facts(train_facts(w, o), rng);
    std::vector<ojson> records;
    for (int i = 0; i < o.sft_examples; i++) {
        const auto [fact, pass] = facts.next();
        const ojson messages    = {user(question(w, fact, pass + fact.person + fact.a)), assistant(answer(w, fact))};
        records.push_back({{"messages", messages}});
    }
    return records;
}

// Chosen: the right answer and a courtesy closing. Rejected: the right answer without it (even
// pairs) or a wrong value with the same closing (odd pairs), so both courtesy and correctness
// are preferred.
std::vector<ojson> pref_records(const World & w, const WorldOptions & o) {
    Random             rng = stream(o, kPrefs);
    Cycle              facts(train_facts(w, o), rng);
    std::vector<ojson> records;
    for (int i = 0; i < o.pref_examples; i++) {
        const auto [fact, pass] = facts.next();
        const std::string q       = question(w, fact, pass + fact.person + fact.a);
        const std::string closing = std::string(" ") + kCourtesyClosings[i % 3];
        const std::string right   = answer(w, fact);
        std::string       rejected;
        if (i % 2 == 0) {
            rejected = right;
        } else {
            std::vector<std::string> wrong = values_of(w, fact.kind);
            wrong.erase(std::find(wrong.begin(), wrong.end(), value_of(w, fact)));
            rejected = answer_with(w, fact, wrong[below(rng, wrong.size())]) + closing;
        }
        records.push_back({{"prompt", q},
                           {"chosen", {user(q), assistant(right + closing)}},
                           {"rejected", {user(q), assistant(rejected)}}});
    }
    return records;
}

// world_facts: one document per (held-out person, attribute), its choices four answer sentences in
// a seeded order: the right one, the asked attribute with a wrong value, and the person's two
// other facts (true, but answers to other questions). Knowledge from pre-training rules out the
// wrong value; only a model that answers the question asked tells the other three apart.
// world_sums: one document per held-out sum.
std::vector<ojson> facts_task_docs(const World & w, const WorldOptions & o) {
    Random             rng = stream(o, kFactsTask);
    std::vector<ojson> docs;
    for (const Fact & f : facts_of(o.people - o.heldout_people, o.people, {})) {
        const std::string q = question(w, f, (int) below(rng, kQuestionPhrasings));
        std::vector<std::string> wrong;
        for (const std::string & v : values_of(w, f.kind)) {
            if (v != value_of(w, f)) {
                wrong.push_back(v);
            }
        }
        std::vector<std::string> choices = {answer(w, f), answer_with(w, f, wrong[below(rng, wrong.size())])};
        for (Kind k : {Kind::color, Kind::pet, Kind::town}) {
            if (k != f.kind) {
                choices.push_back(answer(w, Fact{k, f.person, 0, 0}));
            }
        }
        const std::string right = choices[0];
        shuffle(choices, rng);
        const size_t gold = (size_t) (std::find(choices.begin(), choices.end(), right) - choices.begin());
        docs.push_back({{"person", name_of(w, f)},
                        {"attribute", f.kind == Kind::color ? "color" : f.kind == Kind::pet ? "pet" : "town"},
                        {"question", q},
                        {"choices", choices},
                        {"answer", gold}});
    }
    return docs;
}

std::vector<ojson> sums_task_docs(const World & w, const WorldOptions & o) {
    Random             rng = stream(o, kSumsTask);
    std::vector<ojson> docs;
    for (const Fact & f : facts_of(0, 0, w.heldout_sums)) {
        docs.push_back({{"question", question(w, f, (int) below(rng, kQuestionPhrasings))},
                        {"answer", value_of(w, f)}});
    }
    return docs;
}

// The held-out questions, taken in turn from each kind (color, pet, town, sum), within a kind
// first every fact in a seeded order with one phrasing, then again with the other. Sums with a 0
// are left out: their answer is also an operand ("3 plus 0 is 4." holds "3"), which the judge's
// whole-word rule could not tell from a right answer.
std::vector<std::pair<Fact, int>> judge_questions(const World & w, const WorldOptions & o) {
    Random                                         rng = stream(o, kJudge);
    std::vector<std::vector<std::pair<Fact, int>>> kinds(4);
    for (const Fact & f : facts_of(o.people - o.heldout_people, o.people, w.heldout_sums)) {
        if (f.kind != Kind::sum || (f.a != 0 && f.b != 0)) {
            kinds[(int) f.kind].push_back({f, 0});
        }
    }
    for (auto & list : kinds) {
        shuffle(list, rng);
        const size_t n = list.size();
        for (size_t i = 0; i < n; i++) {
            list.push_back({list[i].first, 1});
        }
    }
    std::vector<std::pair<Fact, int>> questions;
    for (size_t i = 0;; i++) {
        bool any = false;
        for (const auto & list : kinds) {
            if (i < list.size()) {
                questions.push_back(list[i]);
                any = true;
            }
        }
        if (!any) {
            return questions;
        }
    }
}

std::vector<ojson> judge_records(const World & w, const WorldOptions & o) {
    const auto questions = judge_questions(w, o);
    if (o.judge_prompts > (int) questions.size()) {
        throw InputError(fmt::format("--judge-prompts {}: the world has only {} distinct held-out questions",
                                     o.judge_prompts, questions.size()));
    }
    std::vector<ojson> records;
    for (int i = 0; i < o.judge_prompts; i++) {
        const auto & [f, phrasing] = questions[i];
        records.push_back({{"prompt", question(w, f, phrasing)}, {"answer", value_of(w, f)}, {"reference", answer(w, f)}});
    }
    return records;
}

ojson world_json(const World & w, const WorldOptions & o) {
    ojson people = ojson::array();
    for (const Person & p : w.people) {
        people.push_back({{"name", p.name},
                          {"color", kColors[p.color]},
                          {"pet", kPets[p.pet]},
                          {"town", w.towns[p.town]},
                          {"split", p.heldout ? "heldout" : "train"}});
    }
    auto sums = [](const std::vector<std::pair<int, int>> & list) {
        ojson out = ojson::array();
        for (const auto & [a, b] : list) {
            out.push_back({a, b});
        }
        return out;
    };
    return {{"seed", o.seed},
            {"colors", kColors},
            {"pets", kPets},
            {"towns", w.towns},
            {"people", people},
            {"sums", {{"train", sums(w.train_sums)}, {"heldout", sums(w.heldout_sums)}}}};
}

const char * const kFactsTaskYaml = R"yaml(# paft synth: the facts of the held-out people (never in the SFT or preference data), asked as the
# chat models are asked. Each of four answer sentences is scored: the right one, the asked attribute
# with a wrong value, and the person's two other facts (true, but answers to other questions).
task: world_facts
dataset_path: world_facts
test_split: test
output_type: multiple_choice
doc_to_text: "<|user|>\n{{question}}</s>\n<|assistant|>\n"
doc_to_choice: choices
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
)yaml";

const char * const kSumsTaskYaml = R"yaml(# paft synth: the held-out sums (never in the SFT or preference data), asked as the chat models
# are asked; the number after " is " in the greedy answer must be the sum.
task: world_sums
dataset_path: world_sums
test_split: test
output_type: generate_until
doc_to_text: "<|user|>\n{{question}}</s>\n<|assistant|>\n"
doc_to_target: answer
generation_kwargs:
  until: ["</s>", "\n"]
  max_gen_toks: 16
  do_sample: false
filter_list:
  - name: answer-number
    filter:
      - function: regex
        regex_pattern: "is (\\d+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
)yaml";

ojson special_token_globals() {
    return {{"bos_token", "<s>"},
            {"eos_token", "</s>"},
            {"unk_token", "<unk>"},
            {"pad_token", "</s>"},
            {"additional_special_tokens", {"<|user|>", "<|assistant|>", "<|system|>"}}};
}

// tokenizer_config.json as transformers writes it (keys sorted).
std::string tokenizer_config_json() {
    ojson decoder = ojson::object();
    for (size_t i = 0; i < kSpecialTokens.size(); i++) {
        decoder[std::to_string(i)] = {{"content", kSpecialTokens[i]}, {"lstrip", false}, {"normalized", false},
                                      {"rstrip", false},              {"single_word", false}, {"special", true}};
    }
    const ojson config = {{"add_bos_token", false},
                          {"add_eos_token", false},
                          {"added_tokens_decoder", decoder},
                          {"additional_special_tokens", {"<|user|>", "<|assistant|>", "<|system|>"}},
                          {"bos_token", "<s>"},
                          {"chat_template", kWorldChatTemplate},
                          {"clean_up_tokenization_spaces", false},
                          {"eos_token", "</s>"},
                          {"model_max_length", 2048},
                          {"pad_token", "</s>"},
                          {"tokenizer_class", "PreTrainedTokenizerFast"},
                          {"unk_token", "<unk>"}};
    return config.dump(2) + "\n";
}

// A BPE tokenizer trained on every text of the world as the models will see it (conversations
// rendered by the chat template, task prompts with their answers).
tok::TrainedBpe train_tokenizer(const WorldOptions & o, const std::vector<ojson> & corpus, const std::vector<ojson> & sft,
                                const std::vector<ojson> & prefs, const std::vector<ojson> & facts_docs,
                                const std::vector<ojson> & sums_docs, const std::vector<ojson> & judge) {
    const ChatTemplate chat    = ChatTemplate::parse(kWorldChatTemplate, "paft synth chat template");
    const ojson        globals = special_token_globals();
    tok::BpeTrainer    trainer(kSpecialTokens);
    auto render = [&](const ojson & messages) { trainer.add_text(chat.render(messages, false, globals)); };
    for (const ojson & d : corpus) {
        trainer.add_text(d["text"].get<std::string>());
    }
    for (const ojson & r : sft) {
        render(r["messages"]);
    }
    for (const ojson & r : prefs) {
        render(r["chosen"]);
        render(r["rejected"]);
    }
    for (const ojson & d : facts_docs) {
        for (const ojson & choice : d["choices"]) {
            render({user(d["question"]), assistant(choice)});
        }
    }
    for (const ojson & d : sums_docs) {
        render({user(d["question"]), assistant(d["answer"])});
    }
    for (const ojson & r : judge) {
        render({user(r["prompt"]), assistant(r["reference"])});
    }
    return trainer.train(o.vocab_size);
}

void check_options(const WorldOptions & o) {
    auto require = [](bool ok, const std::string & message) {
        if (!ok) {
            throw InputError(message);
        }
    };
    require(o.people >= 2 && o.people <= kMaxPeople, fmt::format("--people {}: must be in 2..{}", o.people, kMaxPeople));
    require(o.heldout_people >= 1 && o.heldout_people < o.people,
            fmt::format("--heldout-people {}: must be at least 1 and fewer than --people ({})", o.heldout_people, o.people));
    const int facts = 3 * o.people + 100;
    require(o.corpus_docs >= 1 && 3 * (int64_t) o.corpus_docs >= facts,
            fmt::format("--corpus-docs {}: must be at least {} so that every one of the {} facts appears (3 or more "
                        "sentences a document)",
                        o.corpus_docs, (facts + 2) / 3, facts));
    require(o.sft_examples >= 1, fmt::format("--sft-examples {}: must be at least 1", o.sft_examples));
    require(o.pref_examples >= 1, fmt::format("--pref-examples {}: must be at least 1", o.pref_examples));
    require(o.judge_prompts >= 1, fmt::format("--judge-prompts {}: must be at least 1", o.judge_prompts));
    const int minimum = (int) kSpecialTokens.size() + 256;
    require(o.vocab_size >= minimum && o.vocab_size <= kMaxVocabSize,
            fmt::format("--vocab-size {}: must be in {}..{} (the {} special tokens and 256 bytes come first)",
                        o.vocab_size, minimum, kMaxVocabSize, kSpecialTokens.size()));
}

}  // namespace

WorldFiles world_files(const std::string & out_dir) {
    WorldFiles f;
    f.corpus        = out_dir + "/corpus.jsonl";
    f.sft           = out_dir + "/sft.jsonl";
    f.prefs         = out_dir + "/prefs.jsonl";
    f.judge         = out_dir + "/judge.jsonl";
    f.world_json    = out_dir + "/world.json";
    f.tokenizer_dir = out_dir + "/tokenizer";
    f.task_files    = {out_dir + "/tasks/world_facts.yaml", out_dir + "/tasks/world_sums.yaml"};
    return f;
}

void write_world(const std::string & out_dir, const WorldOptions & o) {
    check_options(o);
    const World w          = make_world(o);
    const auto  corpus     = corpus_docs(w, o);
    const auto  sft        = sft_records(w, o);
    const auto  prefs      = pref_records(w, o);
    const auto  facts_docs = facts_task_docs(w, o);
    const auto  sums_docs  = sums_task_docs(w, o);
    const auto  judge      = judge_records(w, o);
    const auto  bpe        = train_tokenizer(o, corpus, sft, prefs, facts_docs, sums_docs, judge);

    const WorldFiles f = world_files(out_dir);
    for (const std::string & dir : {f.tokenizer_dir, out_dir + "/tasks/world_facts", out_dir + "/tasks/world_sums"}) {
        make_dirs(dir);
    }
    write_file_atomic(f.corpus, jsonl(corpus));
    write_file_atomic(f.sft, jsonl(sft));
    write_file_atomic(f.prefs, jsonl(prefs));
    write_file_atomic(f.judge, jsonl(judge));
    write_file_atomic(f.world_json, world_json(w, o).dump(2) + "\n");
    write_file_atomic(out_dir + "/tasks/world_facts/test.jsonl", jsonl(facts_docs));
    write_file_atomic(out_dir + "/tasks/world_sums/test.jsonl", jsonl(sums_docs));
    write_file_atomic(f.task_files[0], kFactsTaskYaml);
    write_file_atomic(f.task_files[1], kSumsTaskYaml);
    write_file_atomic(f.tokenizer_dir + "/tokenizer.json", tok::bpe_tokenizer_json(bpe));
    write_file_atomic(f.tokenizer_dir + "/tokenizer_config.json", tokenizer_config_json());
}

}  // namespace paft
