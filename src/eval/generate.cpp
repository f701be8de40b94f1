#include "eval/generate.h"

#include "core/byte_buffer.h"
#include "core/error.h"
#include "eval/text_stream.h"
#include "io/fs.h"
#include "io/json_depth.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

namespace paft {
namespace {

// One sequence being generated.
struct Sequence {
    size_t               index;  // the prompt's index: keys the sampling draws (after first_index), names it
                                 // to callbacks
    TextStream           stream;
    Generation           result;
    std::vector<int32_t> feed;  // the tokens the next forward pass runs (the prompt, then the last token)

    Sequence(size_t index, const Tokenizer & tokenizer, const GenerationOptions & options) :
        index(index),
        stream(tokenizer, options.stop) {}
};

bool is_eos(int32_t token, const GenerationOptions & options) {
    return std::find(options.eos_ids.begin(), options.eos_ids.end(), token) != options.eos_ids.end();
}

// Takes the next token from the logits [V] that follow the sequence's fed tokens, streams the text
// that became final, and says whether the sequence is finished (then result is complete).
bool take_token(Sequence & s, const float * logits, int V, const GenerationOptions & options,
                const std::function<void(const std::string &)> & on_text) {
    const int32_t token = choose_token(logits, V, options.sampling, options.first_index + s.index, s.result.tokens.size());
    s.result.tokens.push_back(token);
    s.feed.assign(1, token);
    std::string piece;
    if (is_eos(token, options)) {
        piece                  = s.stream.finish();
        s.result.finish_reason = "stop";
    } else {
        piece = s.stream.add(token);
        if (s.stream.stopped()) {
            s.result.finish_reason = "stop";
        } else if ((int) s.result.tokens.size() >= options.max_new_tokens) {
            piece += s.stream.finish();
            s.result.finish_reason = "length";
        }
    }
    if (!piece.empty() && on_text) {
        on_text(piece);
    }
    if (s.result.finish_reason.empty()) {
        return false;
    }
    s.result.text = s.stream.text();
    return true;
}

void check_prompt(const std::vector<int32_t> & prompt, size_t index, int V) {
    if (prompt.empty()) {
        throw InputError(fmt::format("prompt {} has no tokens", index + 1));
    }
    for (int32_t id : prompt) {
        if (id < 0 || id >= V) {
            throw InputError(fmt::format("prompt {}: token id {} is outside the model's vocabulary [0, {})",
                                         index + 1, id, V));
        }
    }
}

void check_options(const GenerationOptions & options, int batch) {
    check_sampling_options(options.sampling);
    if (options.max_new_tokens < 0) {
        throw InputError(fmt::format("max_new_tokens {} is negative", options.max_new_tokens));
    }
    if (batch < 1) {
        throw InputError(fmt::format("batch {} must be at least 1", batch));
    }
}

// eos_token_id of a JSON file (an id, a list of ids, null or absent) added to `ids`.
void add_eos_ids(const std::string & path, std::vector<int32_t> & ids) {
    if (!is_file(path)) {
        return;
    }
    nlohmann::json j;
    try {
        const std::string text = read_file(path);
        check_json_depth(text, path);
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception & e) {
        throw InputError(fmt::format("{}: not valid JSON ({})", path, e.what()));
    }
    if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) {
        return;
    }
    const nlohmann::json & v    = j["eos_token_id"];
    const nlohmann::json   list = v.is_array() ? v : nlohmann::json::array({v});
    for (const nlohmann::json & id : list) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
            throw InputError(fmt::format("{}: eos_token_id must be a token id or a list of them", path));
        }
        ids.push_back(id.get<int32_t>());
    }
}

}  // namespace

std::vector<Generation> generate(Decoder & decoder, const Tokenizer & tokenizer,
                                 const std::vector<std::vector<int32_t>> & prompts,
                                 const GenerationOptions & options, int batch, const TextCallback & on_text,
                                 const DoneCallback & on_done) {
    check_options(options, batch);
    const int V = decoder.vocab_size();
    for (size_t i = 0; i < prompts.size(); i++) {
        check_prompt(prompts[i], i, V);
    }
    const ModelConfig &     config = decoder.model().config();
    std::vector<Generation> results(prompts.size());
    // the active sequences, in the order they joined, each with its cache
    std::vector<std::unique_ptr<Sequence>> active;
    std::vector<std::unique_ptr<KvCache>>  caches;
    size_t                                 next = 0;
    auto finish = [&](Sequence & s) {
        results[s.index] = std::move(s.result);
        if (on_done) {
            on_done(s.index, results[s.index]);
        }
    };
    while (next < prompts.size() || !active.empty()) {
        while ((int) active.size() < batch && next < prompts.size()) {
            auto s = std::make_unique<Sequence>(next, tokenizer, options);
            next++;
            if (options.max_new_tokens == 0) {
                s->result.finish_reason = "length";
                finish(*s);
                continue;
            }
            s->feed = prompts[s->index];
            caches.push_back(std::make_unique<KvCache>(config, (int) s->feed.size() + options.max_new_tokens));
            active.push_back(std::move(s));
        }
        if (active.empty()) {
            break;
        }
        std::vector<SequenceInput> inputs(active.size());
        for (size_t i = 0; i < active.size(); i++) {
            inputs[i].cache  = caches[i].get();
            inputs[i].tokens = active[i]->feed;
        }
        const float * logits = decoder.forward(inputs);  // [active, V]
        std::vector<bool> done(active.size());
        for (size_t i = 0; i < active.size(); i++) {
            Sequence & s = *active[i];
            done[i]      = take_token(s, logits + i * (size_t) V, V, options, [&](const std::string & piece) {
                if (on_text) {
                    on_text(s.index, piece);
                }
            });
        }
        size_t kept = 0;
        for (size_t i = 0; i < active.size(); i++) {
            if (done[i]) {
                finish(*active[i]);
                continue;
            }
            std::swap(active[kept], active[i]);
            std::swap(caches[kept], caches[i]);
            kept++;
        }
        active.resize(kept);
        caches.resize(kept);
    }
    return results;
}

std::vector<Generation> generate_shared(Decoder & decoder, const Tokenizer & tokenizer,
                                        const std::vector<std::vector<int32_t>> & prompts,
                                        const GenerationOptions & options, int batch, Communicator * ranks,
                                        const DoneCallback & on_done) {
    if (!ranks || ranks->size() == 1) {
        return generate(decoder, tokenizer, prompts, options, batch, {}, on_done);
    }
    const size_t n = prompts.size(), N = (size_t) ranks->size(), r = (size_t) ranks->rank();
    const size_t from = n * r / N, to = n * (r + 1) / N;
    GenerationOptions mine_options = options;
    mine_options.first_index       = options.first_index + from;
    const std::vector<std::vector<int32_t>> mine(prompts.begin() + (long) from, prompts.begin() + (long) to);
    const std::vector<Generation> own = generate(decoder, tokenizer, mine, mine_options, batch, {},
                                                 [&](size_t i, const Generation & g) {
                                                     if (on_done) {
                                                         on_done(from + i, g);
                                                     }
                                                 });
    std::string bytes;
    for (const Generation & g : own) {
        append_value(bytes, (uint64_t) g.tokens.size());
        bytes.append(reinterpret_cast<const char *>(g.tokens.data()), g.tokens.size() * sizeof(int32_t));
        append_text(bytes, g.text);
        append_text(bytes, g.finish_reason);
    }
    std::vector<Generation> all;
    for (const std::string & theirs : ranks->all_gather(bytes)) {
        for (size_t at = 0; at < theirs.size();) {
            Generation & g     = all.emplace_back();
            const auto   count = read_value<uint64_t>(theirs, at);
            if (count > (theirs.size() - at) / sizeof(int32_t)) {
                throw RuntimeFailure("a rank's message is cut short");
            }
            g.tokens.resize(count);
            std::memcpy(g.tokens.data(), theirs.data() + at, count * sizeof(int32_t));
            at += count * sizeof(int32_t);
            g.text          = read_text(theirs, at);
            g.finish_reason = read_text(theirs, at);
        }
    }
    if (all.size() != n) {
        throw RuntimeFailure(fmt::format("{} generations came back for {} prompts", all.size(), n));
    }
    return all;
}

std::vector<int32_t> model_eos_ids(const std::string & model_dir, const Tokenizer & tokenizer) {
    std::vector<int32_t> ids;
    if (auto eos = tokenizer.eos_id()) {
        ids.push_back(*eos);
    }
    add_eos_ids(model_dir + "/config.json", ids);
    add_eos_ids(model_dir + "/generation_config.json", ids);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
}

ConversationGenerator::ConversationGenerator(Decoder & decoder, const Tokenizer & tokenizer) :
    decoder_(decoder),
    tokenizer_(tokenizer),
    cache_(decoder.model().config(), 256) {}

void ConversationGenerator::reset() {
    cache_.truncate(0);
    cached_.clear();
    reused_ = 0;
}

Generation ConversationGenerator::generate(const std::vector<int32_t> & prompt, const GenerationOptions & options,
                                           uint64_t turn, const std::function<void(const std::string &)> & on_text) {
    check_options(options, 1);
    check_prompt(prompt, 0, decoder_.vocab_size());
    // Reuse the cached positions the prompt starts with, but run at least its last token (its
    // logits give the first new token).
    size_t common = 0;
    while (common < cached_.size() && common + 1 < prompt.size() && cached_[common] == prompt[common]) {
        common++;
    }
    cache_.truncate((int) common);
    cached_.resize(common);
    reused_ = (int) common;
    Sequence s(turn, tokenizer_, options);
    if (options.max_new_tokens == 0) {
        s.result.finish_reason = "length";
        return s.result;
    }
    s.feed.assign(prompt.begin() + (long) common, prompt.end());
    for (bool done = false; !done;) {
        SequenceInput input;
        input.cache  = &cache_;
        input.tokens = s.feed;
        const float * logits = decoder_.forward({&input, 1});
        cached_.insert(cached_.end(), s.feed.begin(), s.feed.end());
        done = take_token(s, logits, decoder_.vocab_size(), options, on_text);
    }
    return s.result;
}

}  // namespace paft
