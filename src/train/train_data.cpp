// load_train_data (trainer.h): the examples of a run from its data files.
#include "core/error.h"
#include "data/pretokenized.h"
#include "train/trainer.h"

#include <fmt/format.h>

#include <optional>

namespace paft {
namespace {

std::optional<Record> first_record(const std::string & path) {
    std::optional<Record> first;
    for_each_record(path, [&](Record && r) {
        first = std::move(r);
        return false;
    });
    return first;
}

// Text goes through this; it exists only when some file needs it.
struct TextEncoding {
    Tokenizer                   tokenizer;
    std::optional<ChatTemplate> chat_template;
    ExampleEncoder              encoder;

    TextEncoding(const TrainOptions & o, const std::string & dir)
        : tokenizer(Tokenizer::load(dir)), chat_template(choose_chat_template(o.chat_template, tokenizer, dir)),
          encoder(tokenizer, chat_template ? &*chat_template : nullptr, o.data) {}
};

// Token ids past the model's vocabulary (a tokenizer with added tokens the model lacks).
void check_vocab(const std::vector<int32_t> & ids, int vocab, const std::string & where) {
    for (int32_t id : ids) {
        if (id >= vocab) {
            throw InputError(fmt::format("{}: token id {} is outside the model's vocabulary ({} entries)", where, id,
                                         vocab));
        }
    }
}

void load_file(const TrainOptions & o, const ModelConfig & model, const std::string & path, bool eval,
               std::unique_ptr<TextEncoding> & text, TrainData & d) {
    const bool            pref  = o.method != Method::sft;
    std::optional<Record> first = first_record(path);
    if (!first) {
        throw InputError(fmt::format("{}: the file holds no records", path));
    }
    if (pref != (detect_format(*first) == DataFormat::preference) && !is_pretokenized(*first)) {
        throw InputError(fmt::format("{}: paft {} needs {} records, but {} looks like {} data", path,
                                     method_name(o.method),
                                     pref ? "preference ('prompt', 'chosen', 'rejected')" : "SFT", first->where,
                                     pref ? "SFT" : "preference"));
    }
    DataReport report;
    const int  vocab = model.vocab_size;
    auto &     sft   = eval ? d.eval_sft : d.sft;
    auto &     prefs = eval ? d.eval_pref : d.pref;
    if (is_pretokenized(*first)) {
        if (pref) {
            prefs = load_pretokenized_preferences(path, o.data, vocab, report);
        } else {
            sft = load_pretokenized_sft(path, o.data, vocab, report);
        }
    } else {
        if (!text) {
            text = std::make_unique<TextEncoding>(o, o.tokenizer.empty() ? o.model : o.tokenizer);
            d.pad_id = text->tokenizer.pad_id().value_or(text->tokenizer.eos_id().value_or(0));
        }
        if (pref) {
            prefs = load_preferences(path, text->encoder, report);
            for (const PreferenceExample & e : prefs) {
                check_vocab(e.prompt_ids, vocab, e.where);
                check_vocab(e.chosen_ids, vocab, e.where);
                check_vocab(e.rejected_ids, vocab, e.where);
            }
        } else {
            sft = load_sft(path, text->encoder, report);
            for (const SftExample & e : sft) {
                check_vocab(e.input_ids, vocab, e.where);
            }
        }
    }
    print_data_report(path, report, pref ? prefs.size() : sft.size());
}

}  // namespace

TrainData load_train_data(const TrainOptions & o, const ModelConfig & model) {
    TrainData                     d;
    std::unique_ptr<TextEncoding> text;
    load_file(o, model, o.train_data, false, text, d);
    if (!o.eval_data.empty()) {
        load_file(o, model, o.eval_data, true, text, d);
    }
    return d;
}

}  // namespace paft
