// paft synth: the synthetic world (src/synth/world.*), its judge (src/synth/judge.*) and the BPE
// trainer (src/tokenizer/bpe_trainer.*).
// - Determinism: the same seed writes the same bytes, another seed other bytes.
// - The world's files checked against its world.json with the sentence forms written out here
//   (docs/SYNTHETIC_WORLD.md): the split (no held-out person or sum in the SFT or preference data),
//   the corpus's coverage (every fact of every person and sum, in every phrasing, many times) and
//   truth (every sentence a true fact), right answers, the preference pairs' two kinds.
// - Everything reads with paft's own readers: records, SFT and preference examples through the
//   world's chat template (the assistant answer and </s> trained), the YAML tasks.
// - The judge on hand-written responses with hand-computed outcomes.
// - The trained tokenizer against the real one: the pinned transformers.js tokenizers
//   (tools/tokenizer/encode_dir.mjs) load the folder and give the same ids for a sample of the
//   world's texts, decode them back, and render the chat template as paft does.
// - The BPE trainer on tiny corpora whose merges are worked out by hand.
// - `paft synth`'s summary and its errors (exit 2).
#include "core/error.h"
#include "data/dataset.h"
#include "data/records.h"
#include "eval/task_yaml.h"
#include "io/fs.h"
#include "synth/judge.h"
#include "synth/world.h"
#include "template/chat_template.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using ojson  = nlohmann::ordered_json;
using json   = nlohmann::json;
using namespace paft;

namespace {

// The world of the default options and seed 7, written once for the whole program.
const fs::path & default_world() {
    static const fs::path dir = [] {
        const fs::path d = fs::temp_directory_path() / ("paft-synth-world-" + std::to_string(::getpid()));
        fs::remove_all(d);
        test_folders_to_remove().push_back(d);
        WorldOptions o;
        o.seed = 7;
        write_world(d.string(), o);
        return d;
    }();
    return dir;
}

// What world.json says, in the shape the checks need.
struct Facts {
    struct Person {
        std::string name, color, pet, town;
        bool        heldout;
    };
    std::vector<Person>              people;
    std::set<std::pair<int, int>>    train_sums, heldout_sums;
    std::vector<std::string>         towns;
};

Facts read_facts(const fs::path & dir) {
    const json w = json::parse(read_file((dir / "world.json").string()));
    Facts      f;
    for (const json & p : w["people"]) {
        f.people.push_back({p["name"], p["color"], p["pet"], p["town"], p["split"] == "heldout"});
    }
    for (const json & s : w["sums"]["train"]) {
        f.train_sums.insert({s[0].get<int>(), s[1].get<int>()});
    }
    for (const json & s : w["sums"]["heldout"]) {
        f.heldout_sums.insert({s[0].get<int>(), s[1].get<int>()});
    }
    f.towns = w["towns"].get<std::vector<std::string>>();
    return f;
}

// The corpus's sentences for a person's facts (docs/SYNTHETIC_WORLD.md): the first of each
// attribute is the answer sentence the chat models are taught.
std::vector<std::vector<std::string>> person_sentences(const Facts::Person & p) {
    const std::string & n = p.name;
    return {{n + "'s favorite color is " + p.color + ".", "The favorite color of " + n + " is " + p.color + ".",
             n + " likes " + p.color + " best."},
            {n + " has a " + p.pet + ".", n + "'s pet is a " + p.pet + ".", "The pet of " + n + " is a " + p.pet + "."},
            {n + " lives in " + p.town + ".", n + "'s home town is " + p.town + ".", n + " is from " + p.town + "."}};
}

std::string sum_sentence(int a, int b) { return fmt::format("{} plus {} is {}.", a, b, a + b); }

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Whether `name` occurs in `text` as a whole word.
bool mentions(const std::string & text, const std::string & name) {
    for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1)) {
        const size_t end = at + name.size();
        if ((at == 0 || !is_letter(text[at - 1])) && (end == text.size() || !is_letter(text[end]))) {
            return true;
        }
    }
    return false;
}

// Every "A plus B" in the text.
std::vector<std::pair<int, int>> sums_in(const std::string & text) {
    std::vector<std::pair<int, int>> out;
    for (size_t at = text.find(" plus "); at != std::string::npos; at = text.find(" plus ", at + 1)) {
        if (at >= 1 && at + 6 < text.size() && isdigit((unsigned char) text[at - 1]) &&
            isdigit((unsigned char) text[at + 6])) {
            out.push_back({text[at - 1] - '0', text[at + 6] - '0'});
        }
    }
    return out;
}

std::map<std::string, std::string> files_under(const fs::path & dir) {
    std::map<std::string, std::string> files;
    for (const auto & e : fs::recursive_directory_iterator(dir)) {
        if (e.is_regular_file()) {
            files[fs::relative(e.path(), dir).string()] = read_file(e.path().string());
        }
    }
    return files;
}

const char * const kClosings[] = {" I hope this helps!", " Happy to help!", " Thank you for asking!"};

// ---- determinism ------------------------------------------------------------------------------

TEST(SynthWorld, SameSeedSameBytesOtherSeedOther) {
    const fs::path dir = fresh_test_folder("synth");
    WorldOptions   o;
    o.seed = 7;
    write_world((dir / "again").string(), o);
    const auto first = files_under(default_world()), again = files_under(dir / "again");
    std::vector<std::string> want = {"corpus.jsonl", "sft.jsonl", "prefs.jsonl", "judge.jsonl", "world.json",
                                     "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
                                     "tasks/world_facts.yaml", "tasks/world_sums.yaml",
                                     "tasks/world_facts/test.jsonl", "tasks/world_sums/test.jsonl"};
    std::vector<std::string> names;
    for (const auto & [name, bytes] : first) {
        names.push_back(name);
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(names, want);
    EXPECT_TRUE(first == again);
    // Writing over an existing world replaces it.
    o.seed = 8;
    write_world((dir / "again").string(), o);
    const auto other = files_under(dir / "again");
    for (const char * name : {"corpus.jsonl", "sft.jsonl", "prefs.jsonl", "judge.jsonl", "world.json",
                              "tokenizer/tokenizer.json", "tasks/world_facts/test.jsonl", "tasks/world_sums/test.jsonl"}) {
        EXPECT_NE(first.at(name), other.at(name)) << name;
    }
    // The YAML files and the config do not depend on the seed.
    EXPECT_EQ(first.at("tasks/world_facts.yaml"), other.at("tasks/world_facts.yaml"));
}

// ---- the world's content ----------------------------------------------------------------------

TEST(SynthWorld, PeopleTownsAndSplits) {
    const Facts f = read_facts(default_world());
    ASSERT_EQ(f.people.size(), 48u);
    ASSERT_EQ(f.towns.size(), 8u);
    std::set<std::string> names(f.towns.begin(), f.towns.end());
    for (size_t i = 0; i < f.people.size(); i++) {
        names.insert(f.people[i].name);
        EXPECT_EQ(f.people[i].heldout, i >= 32) << i;
        EXPECT_TRUE(std::find(f.towns.begin(), f.towns.end(), f.people[i].town) != f.towns.end());
    }
    EXPECT_EQ(names.size(), 56u) << "people and towns must have distinct names";
    for (const std::string & n : names) {
        EXPECT_TRUE(n.size() >= 4 && std::isupper((unsigned char) n[0])) << n;
    }
    EXPECT_EQ(f.train_sums.size(), 60u);
    EXPECT_EQ(f.heldout_sums.size(), 40u);
    for (const auto & s : f.heldout_sums) {
        EXPECT_FALSE(f.train_sums.count(s));
        EXPECT_TRUE(s.first >= 0 && s.first <= 9 && s.second >= 0 && s.second <= 9);
    }
}

TEST(SynthWorld, CorpusCoversEveryFactTruthfully) {
    const Facts f = read_facts(default_world());
    std::map<std::string, int> count;  // every true sentence -> occurrences
    for (const auto & p : f.people) {
        for (const auto & forms : person_sentences(p)) {
            for (const std::string & s : forms) {
                count[s] = 0;
            }
        }
    }
    for (int a = 0; a < 10; a++) {
        for (int b = 0; b < 10; b++) {
            count[sum_sentence(a, b)] = 0;
        }
    }
    const auto docs = read_records((default_world() / "corpus.jsonl").string());
    ASSERT_EQ(docs.size(), 6000u);
    size_t untrue = 0;
    for (const Record & r : docs) {
        const std::string text = r.value.at("text").get<std::string>();
        // Sentences end with "." and are joined by one space.
        int sentences = 0;
        for (size_t start = 0; start < text.size();) {
            size_t end = text.find(". ", start);
            end        = end == std::string::npos ? text.size() : end + 1;
            const std::string sentence = text.substr(start, end - start);
            auto              it       = count.find(sentence);
            if (it == count.end()) {
                ADD_FAILURE_AT(r.where.c_str(), 0) << "not a true sentence of the world: " << sentence;
                if (++untrue > 5) {
                    return;
                }
            } else {
                it->second++;
            }
            sentences++;
            start = end + 1;
        }
        EXPECT_TRUE(sentences >= 3 && sentences <= 6) << r.where << ": " << text;
    }
    // Every phrasing of every fact appears, each many times: about 27000 sentences over 244
    // facts, so about 110 per fact and 37 per phrasing.
    int least = 1 << 30;
    for (const auto & [sentence, n] : count) {
        least = std::min(least, n);
        EXPECT_GE(n, 20) << sentence;
    }
    EXPECT_GE(least, 20);
}

TEST(SynthWorld, SftIsAboutTrainPeopleAndSumsWithRightAnswers) {
    const Facts f       = read_facts(default_world());
    const auto  records = read_records((default_world() / "sft.jsonl").string());
    ASSERT_EQ(records.size(), 2000u);
    std::set<std::string>         people_seen;
    std::set<std::pair<int, int>> sums_seen;
    for (const Record & r : records) {
        const ojson & m = r.value.at("messages");
        ASSERT_EQ(m.size(), 2u);
        ASSERT_EQ(m[0]["role"], "user");
        ASSERT_EQ(m[1]["role"], "assistant");
        const std::string q = m[0]["content"], a = m[1]["content"];
        std::vector<std::string> rights;
        for (const auto & p : f.people) {
            if (mentions(q, p.name) || mentions(a, p.name)) {
                ASSERT_FALSE(p.heldout) << r.where << ": held-out " << p.name;
                people_seen.insert(p.name);
                const auto forms = person_sentences(p);
                const int  kind  = mentions(q, "color") ? 0 : mentions(q, "pet") || mentions(q, "animal") ? 1 : 2;
                rights.push_back(forms[kind][0]);
            }
        }
        for (const auto & s : sums_in(q + " " + a)) {
            ASSERT_TRUE(f.train_sums.count(s)) << r.where << ": " << q;
            sums_seen.insert(s);
            rights.push_back(sum_sentence(s.first, s.second));
        }
        ASSERT_FALSE(rights.empty()) << r.where;
        EXPECT_EQ(a, rights[0]) << r.where << ": " << q;
        EXPECT_EQ(q.back(), '?') << r.where;
    }
    EXPECT_EQ(people_seen.size(), 32u);
    EXPECT_EQ(sums_seen.size(), 60u);
}

TEST(SynthWorld, PreferencePairsPreferCourtesyAndCorrectness) {
    const Facts f       = read_facts(default_world());
    const auto  records = read_records((default_world() / "prefs.jsonl").string());
    ASSERT_EQ(records.size(), 2000u);
    int without_closing = 0, wrong_with_closing = 0;
    for (const Record & r : records) {
        const std::string q = r.value.at("prompt");
        ASSERT_EQ(r.value["chosen"].size(), 2u);
        ASSERT_EQ(r.value["rejected"].size(), 2u);
        EXPECT_EQ(r.value["chosen"][0], (ojson{{"role", "user"}, {"content", q}})) << r.where;
        EXPECT_EQ(r.value["rejected"][0], r.value["chosen"][0]) << r.where;
        const std::string chosen = r.value["chosen"][1]["content"], rejected = r.value["rejected"][1]["content"];
        for (const auto & p : f.people) {
            ASSERT_FALSE(p.heldout && (mentions(q, p.name) || mentions(chosen, p.name) || mentions(rejected, p.name)))
                << r.where << ": held-out " << p.name;
        }
        for (const auto & s : sums_in(q + " " + chosen + " " + rejected)) {
            ASSERT_TRUE(f.train_sums.count(s)) << r.where;
        }
        // chosen = the SFT answer + a closing; the answer is the sentence before the closing.
        std::string closing, answer;
        for (const char * c : kClosings) {
            if (chosen.ends_with(c)) {
                closing = c;
                answer  = chosen.substr(0, chosen.size() - closing.size());
            }
        }
        ASSERT_FALSE(closing.empty()) << r.where << ": " << chosen;
        if (rejected == answer) {
            without_closing++;
        } else {
            // Same stem (up to the value), another value, the same closing.
            ASSERT_TRUE(rejected.ends_with(closing)) << r.where << ": " << rejected;
            const std::string wrong = rejected.substr(0, rejected.size() - closing.size());
            const size_t      stem  = answer.rfind(' ');
            ASSERT_EQ(wrong.substr(0, stem + 1), answer.substr(0, stem + 1)) << r.where;
            EXPECT_NE(wrong, answer) << r.where;
            wrong_with_closing++;
        }
    }
    EXPECT_EQ(without_closing, 1000);
    EXPECT_EQ(wrong_with_closing, 1000);
}

// ---- paft's readers -----------------------------------------------------------------------------

struct WorldChat {
    Tokenizer    tokenizer = Tokenizer::load((default_world() / "tokenizer").string());
    ChatTemplate chat = *choose_chat_template("", tokenizer, (default_world() / "tokenizer").string());
    ojson        globals = {{"bos_token", "<s>"},
                            {"eos_token", "</s>"},
                            {"unk_token", "<unk>"},
                            {"pad_token", "</s>"},
                            {"additional_special_tokens", {"<|user|>", "<|assistant|>", "<|system|>"}}};
    std::string  user_turn(const std::string & q) const {
        return chat.render(ojson::array({{{"role", "user"}, {"content", q}}}), true, globals);
    }
};

TEST(SynthWorld, TokenizerAndChatTemplate) {
    WorldChat w;
    EXPECT_EQ(w.tokenizer.vocab_size(), 512);
    const char * specials[] = {"<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"};
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(w.tokenizer.piece_to_id(specials[i]), i);
        EXPECT_TRUE(w.tokenizer.is_special(i));
    }
    EXPECT_EQ(w.tokenizer.eos_id(), 2);
    EXPECT_EQ(w.tokenizer.bos_id(), 1);
    EXPECT_FALSE(w.tokenizer.is_special(6));
    // No BOS on encode; the template's text, written out by hand.
    EXPECT_EQ(w.tokenizer.encode("red", true), w.tokenizer.encode("red", false));
    EXPECT_EQ(w.user_turn("Q?"), "<|user|>\nQ?</s>\n<|assistant|>\n");
    EXPECT_EQ(w.chat.render(ojson::array({{{"role", "user"}, {"content", "Q?"}}, {{"role", "assistant"}, {"content", "A."}}}),
                            false, w.globals),
              "<|user|>\nQ?</s>\n<|assistant|>\nA.</s>\n");
}

std::string decode_trained(const Tokenizer & tok, const std::vector<int32_t> & ids, const std::vector<int32_t> & labels) {
    std::vector<int32_t> trained;
    for (size_t t = 0; t < ids.size(); t++) {
        if (labels[t] != -100) {
            trained.push_back(ids[t]);
        }
    }
    return tok.decode(trained, false);
}

TEST(SynthWorld, ExamplesEncodeWithTheChatTemplate) {
    WorldChat      w;
    ExampleEncoder enc(w.tokenizer, &w.chat, DataOptions{});
    DataReport     report;
    const auto     sft = load_sft((default_world() / "sft.jsonl").string(), enc, report);
    ASSERT_EQ(sft.size(), 2000u);
    EXPECT_TRUE(report.skipped.empty() && report.warnings.empty());
    const auto records = read_records((default_world() / "sft.jsonl").string());
    for (size_t i = 0; i < sft.size(); i++) {
        // The answer and </s> are trained, nothing else (TRL's assistant mask).
        const std::string answer = records[i].value["messages"][1]["content"];
        ASSERT_EQ(decode_trained(w.tokenizer, sft[i].input_ids, sft[i].labels), answer + "</s>") << sft[i].where;
    }
    DataReport pref_report;
    const auto prefs   = load_preferences((default_world() / "prefs.jsonl").string(), enc, pref_report);
    const auto pref_rs = read_records((default_world() / "prefs.jsonl").string());
    ASSERT_EQ(prefs.size(), 2000u);
    EXPECT_TRUE(pref_report.skipped.empty() && pref_report.warnings.empty());
    for (size_t i = 0; i < prefs.size(); i++) {
        const ojson & v = pref_rs[i].value;
        ASSERT_TRUE(prefs[i].conversational);
        ASSERT_EQ(w.tokenizer.decode(prefs[i].prompt_ids, false), w.user_turn(v["prompt"])) << prefs[i].where;
        ASSERT_EQ(w.tokenizer.decode(prefs[i].chosen_ids, false), v["chosen"][1]["content"].get<std::string>() + "</s>\n");
        ASSERT_EQ(w.tokenizer.decode(prefs[i].rejected_ids, false),
                  v["rejected"][1]["content"].get<std::string>() + "</s>\n");
    }
}

TEST(SynthWorld, TasksLoadAsTheChatModelsAreAsked) {
    WorldChat   w;
    const Facts f     = read_facts(default_world());
    const auto  files = world_files(default_world().string());
    ASSERT_EQ(files.task_files.size(), 2u);

    const Task facts = load_custom_task(custom_task_spec(files.task_files[0]), 0);
    EXPECT_EQ(facts.name, "world_facts");
    EXPECT_EQ(facts.scoring, Scoring::MultipleChoice);
    EXPECT_EQ(facts.choice_delimiter, "");
    EXPECT_EQ(facts.metrics, (std::vector<std::string>{"acc", "acc_norm"}));
    ASSERT_EQ(facts.eval_docs.size(), 48u);
    std::map<std::string, int> asked;  // held-out person -> attributes asked
    for (const TaskDoc & d : facts.eval_docs) {
        const Facts::Person * who = nullptr;
        for (const auto & p : f.people) {
            if (mentions(d.text, p.name)) {
                who = &p;
            }
        }
        ASSERT_TRUE(who && who->heldout) << d.where << ": " << d.text;
        asked[who->name]++;
        // Four sentences, written out here: the asked attribute with the right value, the same
        // with another value, and the person's two other facts.
        ASSERT_EQ(d.choices.size(), 4u) << d.where;
        const std::string color = who->name + "'s favorite color is " + who->color + ".";
        const std::string pet   = who->name + " has a " + who->pet + ".";
        const std::string town  = who->name + " lives in " + who->town + ".";
        const std::string & gold = d.choices[d.gold];
        std::string         asked_stem, other_a, other_b;
        if (gold == color) {
            asked_stem = who->name + "'s favorite color is ", other_a = pet, other_b = town;
        } else if (gold == pet) {
            asked_stem = who->name + " has a ", other_a = color, other_b = town;
        } else {
            ASSERT_EQ(gold, town) << d.where;
            asked_stem = who->name + " lives in ", other_a = color, other_b = pet;
        }
        EXPECT_EQ(std::count(d.choices.begin(), d.choices.end(), other_a), 1) << d.where;
        EXPECT_EQ(std::count(d.choices.begin(), d.choices.end(), other_b), 1) << d.where;
        int wrong_values = 0;
        for (const std::string & c : d.choices) {
            wrong_values += c != gold && c.rfind(asked_stem, 0) == 0;
        }
        EXPECT_EQ(wrong_values, 1) << d.where;
        // The question matches the attribute the gold answer is about.
        const size_t q_start = std::string("<|user|>\n").size(), q_end = d.text.find("</s>");
        ASSERT_NE(q_end, std::string::npos);
        const std::string question = d.text.substr(q_start, q_end - q_start);
        EXPECT_TRUE(gold == color ? question.find("color") != std::string::npos
                    : gold == pet ? question.find("pet") != std::string::npos
                                  : question.find("live") != std::string::npos)
            << d.where << ": " << question;
        // The prompt is the user turn as the template renders it, then the assistant's turn.
        EXPECT_EQ(d.text, w.user_turn(question)) << d.where;
    }
    EXPECT_EQ(asked.size(), 16u);
    for (const auto & [name, n] : asked) {
        EXPECT_EQ(n, 3) << name;
    }

    const Task sums = load_custom_task(custom_task_spec(files.task_files[1]), 0);
    EXPECT_EQ(sums.name, "world_sums");
    EXPECT_EQ(sums.scoring, Scoring::ExactMatch);
    EXPECT_EQ(sums.until, (std::vector<std::string>{"</s>", "\n"}));
    EXPECT_EQ(sums.max_gen_toks, 16);
    EXPECT_EQ(sums.answer_regex, "is (\\d+)");
    ASSERT_EQ(sums.eval_docs.size(), 40u);
    std::set<std::pair<int, int>> seen;
    for (const TaskDoc & d : sums.eval_docs) {
        const auto s = sums_in(d.text);
        ASSERT_EQ(s.size(), 1u) << d.text;
        EXPECT_TRUE(f.heldout_sums.count(s[0])) << d.text;
        seen.insert(s[0]);
        EXPECT_EQ(d.answer, std::to_string(s[0].first + s[0].second));
        const size_t q_end = d.text.find("</s>");
        EXPECT_EQ(d.text, w.user_turn(d.text.substr(9, q_end - 9))) << d.where;
    }
    EXPECT_EQ(seen, f.heldout_sums);
}

// ---- the judge ----------------------------------------------------------------------------------

TEST(SynthJudge, HandWrittenResponses) {
    const JudgeCase color{"What is Zorbin's favorite color?", "red", "Zorbin's favorite color is red.", "j:1"};
    struct Case {
        const char * response;
        int          score;
        double       outcome;
    };
    const Case cases[] = {
        {"Zorbin's favorite color is red. I hope this helps!", 2, 1.0},
        {"Zorbin's favorite color is red.", 1, 0.5},  // the reference itself: a tie
        {"Zorbin's favorite color is blue. Happy to help!", 1, 0.5},
        {"Zorbin's favorite color is blue.", 0, 0.0},
        {"Zorbin's favorite color is reddish. Thank you for asking!", 1, 0.5},  // "red" not a whole word
        {"Red. I hope this helps!", 1, 0.5},                                     // case matters
        {"red", 1, 0.5},
        {"(red)Thank you for asking!", 2, 1.0},
        {"I hope this helps! Happy to help!", 1, 0.5},  // closings count once
        {"Zorbin's favorite color is red. I hope this helps", 1, 0.5},  // no "!": not the closing
        {"", 0, 0.0},
    };
    for (const Case & c : cases) {
        EXPECT_EQ(judge_score(c.response, color), c.score) << c.response;
        EXPECT_EQ(judge_outcome(c.response, color), c.outcome) << c.response;
    }
    const JudgeCase sum{"What is 5 plus 7?", "12", "5 plus 7 is 12.", "j:2"};
    EXPECT_EQ(judge_outcome("5 plus 7 is 12. Happy to help!", sum), 1.0);
    EXPECT_EQ(judge_outcome("5 plus 7 is 125. Happy to help!", sum), 0.5);
    EXPECT_EQ(judge_outcome("5 plus 7 is 112.", sum), 0.0);
    EXPECT_EQ(judge_outcome("12!Happy to help!", sum), 1.0);
}

TEST(SynthJudge, ReadsCasesAndNamesBadLines) {
    const fs::path dir  = fresh_test_folder("synth");
    const fs::path good = dir / "judge.jsonl";
    spit(good, "{\"prompt\": \"Q1?\", \"answer\": \"red\", \"reference\": \"R1.\", \"extra\": 1}\n\n"
               "{\"prompt\": \"Q2?\", \"answer\": \"7\", \"reference\": \"R2.\"}\n");
    const auto cases = read_judge_cases(good.string());
    ASSERT_EQ(cases.size(), 2u);
    EXPECT_EQ(cases[1].prompt, "Q2?");
    EXPECT_EQ(cases[1].answer, "7");
    EXPECT_EQ(cases[1].reference, "R2.");
    EXPECT_EQ(cases[1].where, good.string() + ":3");
    const fs::path bad = dir / "bad.jsonl";
    spit(bad, "{\"prompt\": \"Q1?\", \"answer\": \"red\", \"reference\": \"R1.\"}\n{\"prompt\": \"Q2?\", \"reference\": \"R2.\"}\n");
    expect_input_error([&] { read_judge_cases(bad.string()); }, {bad.string() + ":2", "'answer'", "missing"});
    spit(bad, "{\"prompt\": \"Q1?\", \"answer\": 3, \"reference\": \"R1.\"}\n");
    expect_input_error([&] { read_judge_cases(bad.string()); }, {bad.string() + ":1", "'answer'", "3"});
    spit(bad, "{\"prompt\": \"\", \"answer\": \"x\", \"reference\": \"R1.\"}\n");
    expect_input_error([&] { read_judge_cases(bad.string()); }, {bad.string() + ":1", "'prompt'"});
    spit(bad, "not json\n");
    expect_input_error([&] { read_judge_cases(bad.string()); }, {bad.string() + ":1"});
}

TEST(SynthJudge, WorldPromptsAreHeldOutOfEveryKind) {
    const Facts f     = read_facts(default_world());
    const auto  cases = read_judge_cases(world_files(default_world().string()).judge);
    ASSERT_EQ(cases.size(), 64u);
    std::map<std::string, int> kinds;
    std::set<std::string>      prompts;
    for (const JudgeCase & c : cases) {
        prompts.insert(c.prompt);
        // The reference is right and plain; with a closing it wins, a bare wrong answer loses.
        EXPECT_EQ(judge_outcome(c.reference, c), 0.5) << c.where;
        EXPECT_EQ(judge_outcome(c.reference + " Happy to help!", c), 1.0) << c.where;
        std::string kind;
        for (const auto & p : f.people) {
            if (mentions(c.prompt, p.name)) {
                ASSERT_TRUE(p.heldout) << c.where;
                const int attribute = mentions(c.prompt, "color") ? 0 : mentions(c.prompt, "live") ? 2 : 1;
                kind                = attribute == 0 ? "color" : attribute == 1 ? "pet" : "town";
                EXPECT_EQ(c.answer, attribute == 0 ? p.color : attribute == 1 ? p.pet : p.town) << c.where;
                EXPECT_EQ(c.reference, person_sentences(p)[attribute][0]) << c.where;
            }
        }
        if (kind.empty()) {
            const auto s = sums_in(c.prompt);
            ASSERT_EQ(s.size(), 1u) << c.where;
            ASSERT_TRUE(f.heldout_sums.count(s[0])) << c.where;
            EXPECT_EQ(c.answer, std::to_string(s[0].first + s[0].second));
            EXPECT_EQ(c.reference, sum_sentence(s[0].first, s[0].second));
            // A 0 would make the answer an operand, which the whole-word rule cannot tell apart.
            EXPECT_TRUE(s[0].first != 0 && s[0].second != 0) << c.where;
            kind = "sum";
        }
        kinds[kind]++;
    }
    EXPECT_EQ(prompts.size(), 64u);
    EXPECT_EQ(kinds, (std::map<std::string, int>{{"color", 16}, {"pet", 16}, {"sum", 16}, {"town", 16}}));
}

// ---- the tokenizer against the real one ----------------------------------------------------------

TEST(SynthTokenizer, MatchesTransformersJs) {
    const fs::path dir = fresh_test_folder("synth");
    WorldChat      w;
    const auto     files = world_files(default_world().string());
    // A sample of every kind of text the models see, and some text from outside the world.
    std::vector<std::string> texts;
    ojson                    chats = ojson::array();
    auto                     every = [](const std::vector<Record> & rs, size_t step, const std::function<void(const ojson &)> & f) {
        for (size_t i = 0; i < rs.size(); i += step) {
            f(rs[i].value);
        }
    };
    every(read_records(files.corpus), 40, [&](const ojson & v) { texts.push_back(v["text"]); });
    every(read_records(files.sft), 40, [&](const ojson & v) {
        texts.push_back(w.chat.render(v["messages"], false, w.globals));
        chats.push_back({v["messages"], false});
        chats.push_back({ojson::array({v["messages"][0]}), true});
    });
    every(read_records(files.prefs), 40, [&](const ojson & v) {
        texts.push_back(w.chat.render(v["chosen"], false, w.globals));
        texts.push_back(w.chat.render(v["rejected"], false, w.globals));
        chats.push_back({v["rejected"], false});
    });
    for (const std::string task : {"world_facts", "world_sums"}) {
        for (const TaskDoc & d : load_custom_task(custom_task_spec(default_world() / "tasks" / (task + ".yaml")), 0).eval_docs) {
            texts.push_back(d.text);
            for (const std::string & c : d.choices) {
                texts.push_back(d.text + c);
            }
        }
    }
    every(read_records(files.judge), 4, [&](const ojson & v) {
        texts.push_back(v["prompt"]);
        texts.push_back(v["reference"]);
    });
    for (const char * other : {"Hello, World!\n\n  two  spaces\tand a tab", "Ünïcödé ✓ 日本語 🙂", "x=3.14; y=-2e10",
                               "<|user|><|assistant|></s></s><s><unk><|system|>", "   ", "I'll say it's 42's", ""}) {
        texts.push_back(other);
    }
    ASSERT_GT(texts.size(), 400u);

    ojson items = ojson::array();
    for (const std::string & t : texts) {
        items.push_back({t, true});
        items.push_back({t, false});
    }
    ojson decode = ojson::array();
    for (const std::string & t : texts) {
        decode.push_back(w.tokenizer.encode(t, false));
    }
    const ojson request = {{"dir", files.tokenizer_dir}, {"items", items}, {"decode", decode}, {"chats", chats}};
    write_file_atomic((dir / "request.json").string(), request.dump());
    const std::string command =
        fmt::format("NODE_PATH='{}/node_modules' node '{}/tools/tokenizer/encode_dir.mjs' < '{}' > '{}' 2> '{}'", PAFT_NPM,
                    PAFT_SOURCE_DIR, (dir / "request.json").string(), (dir / "reply.json").string(), (dir / "err").string());
    const std::string err = slurp(dir / "err");  // the end: Node quotes whole minified lines
    ASSERT_EQ(std::system(command.c_str()), 0) << command << "\n" << err.substr(err.size() > 2000 ? err.size() - 2000 : 0)
                                               << "\n(the oracle needs node and the ctest fixture tokenizer_oracle)";
    const json reply = json::parse(read_file((dir / "reply.json").string()));
    ASSERT_EQ(reply["ids"].size(), items.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < texts.size(); i++) {
        for (int special = 0; special < 2; special++) {
            const auto want = reply["ids"][2 * i + special].get<std::vector<int32_t>>();
            const auto got  = w.tokenizer.encode(texts[i], special == 0);
            if (got != want && ++mismatches <= 5) {
                ADD_FAILURE() << json(texts[i]).dump() << "\n  transformers.js " << json(want).dump() << "\n  paft            "
                              << json(got).dump();
            }
        }
        // Both decode the ids back to the text (byte-level BPE loses nothing).
        EXPECT_EQ(reply["texts"][i].get<std::string>(), texts[i]);
        EXPECT_EQ(w.tokenizer.decode(decode[i].get<std::vector<int32_t>>(), false), texts[i]);
    }
    EXPECT_EQ(mismatches, 0u);
    // Its Jinja renders the world's template as paft's does.
    ASSERT_EQ(reply["rendered"].size(), chats.size());
    for (size_t i = 0; i < chats.size(); i++) {
        EXPECT_EQ(reply["rendered"][i].get<std::string>(), w.chat.render(chats[i][0], chats[i][1].get<bool>(), w.globals));
    }
}

// ---- the BPE trainer ---------------------------------------------------------------------------

// "xy xy yx yx" pre-tokenizes to xy, Ġxy, Ġyx, Ġyx (Ġ = the space's byte character, U+0120,
// whose UTF-8 sorts after ASCII). Pair counts: (x,y) 2, (Ġ,x) 1, (Ġ,y) 2, (y,x) 2; the tie goes
// to the smallest strings: "x y". Then (Ġ,xy) 1, (Ġ,y) 2, (y,x) 2: "y x" ("y" < "Ġ"). Then
// (Ġ,xy) 1, (Ġ,yx) 2: "Ġ yx". Then only (Ġ,xy) once: stop.
TEST(BpeTrainer, MergesByCountThenByStrings) {
    tok::BpeTrainer trainer({"<s>"});
    trainer.add_text("xy xy yx yx");
    const tok::TrainedBpe bpe = trainer.train(1000);
    using M                   = std::pair<std::string, std::string>;
    EXPECT_EQ(bpe.merges, (std::vector<M>{{"x", "y"}, {"y", "x"}, {"\xC4\xA0", "yx"}}));
    ASSERT_EQ(bpe.vocab.size(), 1u + 256u + 3u);
    EXPECT_EQ(bpe.special_count, 1u);
    EXPECT_EQ(bpe.vocab[0], "<s>");
    EXPECT_EQ(bpe.vocab[1 + 'A'], "A");               // bytes in byte order after the specials
    EXPECT_EQ(bpe.vocab[1 + ' '], "\xC4\xA0");        // the space's character
    EXPECT_EQ(bpe.vocab[1 + 0], "\xC4\x80");          // byte 0: U+0100
    EXPECT_EQ(bpe.vocab[257], "xy");
    EXPECT_EQ(bpe.vocab[258], "yx");
    EXPECT_EQ(bpe.vocab[259], "\xC4\xA0yx");

    // The vocabulary size stops it: one merge.
    const tok::TrainedBpe small = trainer.train(258);
    EXPECT_EQ(small.merges, (std::vector<M>{{"x", "y"}}));
    EXPECT_THROW(trainer.train(256), InputError);

    // The file it writes loads, and encodes by those merges: "xy yx" = xy, Ġyx; "yxy" = y, xy
    // (the lower-ranked merge first).
    const fs::path dir = fresh_test_folder("synth");
    write_file_atomic((dir / "tokenizer.json").string(), tok::bpe_tokenizer_json(bpe));
    const Tokenizer t = Tokenizer::load(dir.string());
    EXPECT_EQ(t.vocab_size(), 260);
    EXPECT_EQ(t.encode("xy yx", true), (std::vector<int32_t>{257, 259}));
    EXPECT_EQ(t.encode("yxy", true), (std::vector<int32_t>{1 + 'y', 257}));
    EXPECT_EQ(t.encode("<s>xy", false), (std::vector<int32_t>{0, 257}));
    EXPECT_TRUE(t.is_special(0));
    EXPECT_EQ(t.decode({0, 259, 1 + '!'}, false), "<s> yx!");
}

// Special tokens split the text and never join a merge: "ab<s>ab<|user|>b c" counts ab, ab, b, Ġc:
// (a,b) 2 -> "ab", then nothing twice.
// "aab aab ab ab": pieces aab, Ġaab, Ġab, Ġab: (a,b) 4 -> "ab"; then (Ġ,ab) 2, (a,ab) 2: "a ab"
// < "Ġ ab" -> "aab"; then (Ġ,aab) 1, (Ġ,ab) 2 -> "Ġab"; then (Ġ,aab) once: stop.
// "bc bc a abc abc": bc, Ġbc, Ġa, Ġabc, Ġabc: (b,c) 4 -> bc; (Ġ,a) 3 -> Ġa; (Ġa,bc) 2 (and
// (Ġ,bc) 1) -> Ġabc; then nothing twice.
TEST(BpeTrainer, SpecialTokensAndMoreCorpora) {
    tok::BpeTrainer trainer({"<s>", "<|user|>"});
    trainer.add_text("ab<s>ab<|user|>b c");
    using M = std::pair<std::string, std::string>;
    EXPECT_EQ(trainer.train(1000).merges, (std::vector<M>{{"a", "b"}}));

    tok::BpeTrainer second({"<s>"});
    second.add_text("aab aab ab ab");
    const auto bpe = second.train(1000);
    EXPECT_EQ(bpe.merges, (std::vector<M>{{"a", "b"}, {"a", "ab"}, {"\xC4\xA0", "ab"}}));
    EXPECT_EQ(bpe.vocab.size(), 1u + 256u + 3u);

    tok::BpeTrainer third({"<s>"});
    third.add_text("bc bc a abc abc");
    EXPECT_EQ(third.train(1000).merges, (std::vector<M>{{"b", "c"}, {"\xC4\xA0", "a"}, {"\xC4\xA0" "a", "bc"}}));

    expect_input_error([] { tok::BpeTrainer({}).add_text("\xFF"); }, {"UTF-8"});
}

// ---- the command --------------------------------------------------------------------------------

TEST(SynthCli, WritesAndSummarises) {
    const fs::path dir = fresh_test_folder("synth");
    const auto     r   = run_paft({"synth", "--out", (dir / "w").string(), "--seed", "3", "--people", "12",
                                   "--corpus-docs", "200", "--sft-examples", "30", "--pref-examples", "20",
                                   "--judge-prompts", "8", "--vocab-size", "300"},
                                  dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.out.find("12 people (4 held out)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("vocabulary 300"), std::string::npos) << r.out;
    EXPECT_EQ(read_records((dir / "w" / "sft.jsonl").string()).size(), 30u);
    EXPECT_EQ(read_records((dir / "w" / "prefs.jsonl").string()).size(), 20u);
    EXPECT_EQ(read_records((dir / "w" / "judge.jsonl").string()).size(), 8u);
    EXPECT_EQ(read_records((dir / "w" / "tasks" / "world_facts" / "test.jsonl").string()).size(), 12u);
    EXPECT_EQ(Tokenizer::load((dir / "w" / "tokenizer").string()).vocab_size(), 300);
}

// The tasks run in `paft eval` on a random model with the world's vocabulary and tokenizer (the
// mechanics only: a random model's scores mean nothing).
TEST(SynthCli, TasksRunInPaftEval) {
    const fs::path dir    = fresh_test_folder("synth");
    const json     config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 32},
                             {"intermediate_size", 48}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                             {"num_key_value_heads", 2}, {"head_dim", 8}, {"vocab_size", 512},
                             {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                             {"bos_token_id", 1}, {"eos_token_id", 2}, {"tie_word_embeddings", false}};
    spit(dir / "config.json", config.dump());
    const auto made = run_paft({"init-model", "--config", (dir / "config.json").string(), "--out", (dir / "model").string()}, dir);
    ASSERT_EQ(made.code, 0) << describe(made);
    const auto files = world_files(default_world().string());
    copy_files_if_present(files.tokenizer_dir, (dir / "model").string(), {"tokenizer.json", "tokenizer_config.json"});
    const auto r = run_paft({"eval", "--model", (dir / "model").string(), "--tasks",
                             files.task_files[0] + "," + files.task_files[1], "--out", (dir / "results.json").string()},
                            dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    const json results = json::parse(read_file((dir / "results.json").string()))["results"];
    EXPECT_TRUE(results["world_facts"].contains("acc") && results["world_facts"].contains("acc_norm")) << results.dump();
    EXPECT_TRUE(results["world_sums"].contains("exact_match")) << results.dump();
}

TEST(SynthCli, BadOptionsExitTwo) {
    const fs::path dir = fresh_test_folder("synth");
    const std::string out = (dir / "w").string();
    expect_usage_error(run_paft({"synth"}, dir), {"--out"});
    expect_usage_error(run_paft({"synth", "--out", out, "--people", "many"}, dir), {"--people"});
    expect_input_error(run_paft({"synth", "--out", out, "--people", "1"}, dir), {"--people 1"});
    expect_input_error(run_paft({"synth", "--out", out, "--people", "12", "--heldout-people", "12"}, dir),
                       {"--heldout-people 12"});
    expect_input_error(run_paft({"synth", "--out", out, "--vocab-size", "100"}, dir), {"--vocab-size 100", "262"});
    expect_input_error(run_paft({"synth", "--out", out, "--corpus-docs", "10"}, dir), {"--corpus-docs 10", "244"});
    expect_input_error(run_paft({"synth", "--out", out, "--judge-prompts", "1000"}, dir), {"--judge-prompts 1000"});
    expect_input_error(run_paft({"synth", "--out", out, "--sft-examples", "0"}, dir), {"--sft-examples 0"});
    EXPECT_FALSE(fs::exists(dir / "w" / "corpus.jsonl"));
}

}  // namespace
