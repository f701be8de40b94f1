// paft tokenize: what the tokenizer and the chat template make of a text or a dataset, and
// which tokens are trained on (the loss mask), for people (--json: for programs).
#include "cli/commands.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/packing.h"
#include "model/batch.h"

#include <fmt/color.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <unistd.h>

namespace paft {
namespace {

using json = nlohmann::json;

struct TokenizeOptions {
    std::string tokenizer, text, data, format = "auto", chat_template;
    int         max_length = 1024, max_prompt_length = 0, limit = 10;
    bool        json = false, no_special_tokens = false, all_tokens = false, packing = false;
};

// Standard output, written in chunks of about a megabyte (a large dataset's --json stays small in
// memory); write errors are run-time failures.
class Output {
public:
    explicit Output(bool color) : color_(color) {}
    void text(const std::string & s) {
        out_ += s;
        if (out_.size() > (1u << 20)) {
            flush();
        }
    }
    // A run of trained tokens: green on a terminal, [[...]] otherwise.
    void trained(const std::string & s) {
        text(color_ ? fmt::format(fmt::fg(fmt::terminal_color::green), "{}", s) : "[[" + s + "]]");
    }
    void flush() {
        if (std::fwrite(out_.data(), 1, out_.size(), stdout) != out_.size() || std::fflush(stdout) != 0) {
            throw RuntimeFailure("cannot write to standard output");
        }
        out_.clear();
    }

private:
    bool        color_;
    std::string out_;
};

// A piece as a JSON string without quotes: newlines and control bytes stay visible.
std::string visible(const std::string & piece) {
    std::string s = json(piece).dump(-1, ' ', false, json::error_handler_t::replace);
    return s.substr(1, s.size() - 2);
}

void show_text(const Tokenizer & tok, const TokenizeOptions & o, Output & out) {
    const std::vector<int32_t> ids = tok.encode(o.text, !o.no_special_tokens);
    if (o.json) {
        out.text(json{{"input_ids", ids}}.dump() + "\n");
        return;
    }
    out.text(fmt::format("{} tokens\n", ids.size()));
    for (size_t i = 0; i < ids.size(); i++) {
        out.text(fmt::format("{:>6} {:>8}  {}\n", i, ids[i], visible(tok.id_to_piece(ids[i]))));
    }
}

// The decoded text of ids, with the runs whose labels are set marked as trained.
void show_masked(const Tokenizer & tok, const std::vector<int32_t> & ids, const std::vector<int32_t> & labels,
                 Output & out) {
    size_t start = 0;
    while (start < ids.size()) {
        const bool trained = labels[start] != kIgnoreIndex;
        size_t     end     = start;
        while (end < ids.size() && (labels[end] != kIgnoreIndex) == trained) {
            end++;
        }
        std::string piece = tok.decode(std::vector<int32_t>(ids.begin() + start, ids.begin() + end), false);
        trained ? out.trained(piece) : out.text(piece);
        start = end;
    }
    out.text("\n");
}

void show_sft(const Tokenizer & tok, const std::vector<SftExample> & examples, const TokenizeOptions & o,
              Output & out) {
    for (size_t i = 0; i < examples.size(); i++) {
        const SftExample & ex = examples[i];
        if (o.json) {
            out.text(json{{"where", ex.where}, {"input_ids", ex.input_ids}, {"labels", ex.labels}}.dump() + "\n");
            continue;
        }
        if ((int) i >= o.limit) {
            out.text(fmt::format("... {} more (--limit)\n", examples.size() - i));
            break;
        }
        out.text(fmt::format("── {}  {}  {} tokens, {} trained\n", ex.where, ex.schema, ex.input_ids.size(),
                             ex.trained_tokens()));
        show_masked(tok, ex.input_ids, ex.labels, out);
    }
}

void show_packed(const std::vector<SftExample> & examples, const TokenizeOptions & o, Output & out) {
    if (o.max_length <= 0) {
        throw InputError("--packing needs --max-length > 0");
    }
    const auto rows = pack_examples(examples, o.max_length);
    for (const PackedRow & r : rows) {
        if (o.json) {
            out.text(json{{"input_ids", r.input_ids},
                          {"labels", r.labels},
                          {"position_ids", r.position_ids},
                          {"seq_lengths", r.seq_lengths}}
                         .dump() +
                     "\n");
        } else {
            std::vector<std::string> where;
            for (size_t e : r.examples) {
                where.push_back(examples[e].where);
            }
            out.text(fmt::format("row of {} tokens: {}\n", r.input_ids.size(), fmt::join(where, ", ")));
        }
    }
    if (!o.json) {
        out.text(fmt::format("{} examples packed into {} rows of at most {} tokens\n", examples.size(), rows.size(),
                             o.max_length));
    }
}

void show_preferences(const Tokenizer & tok, const std::vector<PreferenceExample> & examples,
                      const TokenizeOptions & o, Output & out) {
    for (size_t i = 0; i < examples.size(); i++) {
        const PreferenceExample & ex = examples[i];
        if (o.json) {
            json j = {{"where", ex.where},
                      {"prompt_ids", ex.prompt_ids},
                      {"chosen_ids", ex.chosen_ids},
                      {"rejected_ids", ex.rejected_ids}};
            for (bool chosen : {true, false}) {
                j[chosen ? "chosen" : "rejected"] = {{"input_ids", ex.sequence(chosen)}, {"labels", ex.labels(chosen)}};
            }
            out.text(j.dump() + "\n");
            continue;
        }
        if ((int) i >= o.limit) {
            out.text(fmt::format("... {} more (--limit)\n", examples.size() - i));
            break;
        }
        out.text(fmt::format("── {}  preference  prompt {} tokens, chosen {}, rejected {}\n", ex.where,
                             ex.prompt_ids.size(), ex.chosen_ids.size(), ex.rejected_ids.size()));
        for (bool chosen : {true, false}) {
            out.text(chosen ? "chosen:   " : "rejected: ");
            show_masked(tok, ex.sequence(chosen), ex.labels(chosen), out);
        }
    }
}

void show_data(const Tokenizer & tok, const TokenizeOptions & o, Output & out) {
    auto        chat = choose_chat_template(o.chat_template, tok, o.tokenizer);
    DataOptions options;
    options.max_length           = o.max_length;
    options.max_prompt_length    = o.max_prompt_length;
    options.assistant_only_loss  = !o.all_tokens;
    options.completion_only_loss = !o.all_tokens;
    ExampleEncoder encoder(tok, chat ? &*chat : nullptr, options);
    DataReport     report;
    const DataFormat format = o.format == "auto" ? detect_file_format(o.data)
                              : o.format == "pref" ? DataFormat::preference
                                                   : DataFormat::sft;
    if (format == DataFormat::preference) {
        if (o.packing) {
            throw InputError("--packing is for SFT data (TRL does not pack preference pairs)");
        }
        const auto examples = load_preferences(o.data, encoder, report);
        show_preferences(tok, examples, o, out);
        out.flush();
        print_data_report(o.data, report, examples.size());
    } else {
        const auto examples = load_sft(o.data, encoder, report);
        o.packing ? show_packed(examples, o, out) : show_sft(tok, examples, o, out);
        out.flush();
        print_data_report(o.data, report, examples.size());
    }
}

}  // namespace

void register_tokenize(CLI::App & app) {
    auto   o   = std::make_shared<TokenizeOptions>();
    auto * cmd = app.add_subcommand("tokenize", "Show the tokens of a text, or of a dataset with its loss mask");
    cmd->add_option("--tokenizer", o->tokenizer, "Folder with tokenizer.json (and tokenizer_config.json)")
        ->required();
    auto * text = cmd->add_option("--text", o->text, "Text to tokenize");
    auto * data = cmd->add_option("--data", o->data, "Dataset: JSON lines or a JSON array (SFT or preferences)");
    text->excludes(data);
    cmd->add_option("--format", o->format, "Dataset schema family")
        ->check(CLI::IsMember({"auto", "sft", "pref"}))
        ->capture_default_str();
    cmd->add_option("--chat-template", o->chat_template,
                    "Jinja file or built-in template (chatml, zephyr, llama3, llama2); default: the tokenizer's");
    cmd->add_option("--max-length", o->max_length, "Truncate sequences to this many tokens (0 = no limit)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--max-prompt-length", o->max_prompt_length,
                    "Preferences: keep the prompt's last N tokens (0 = no limit)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--all-tokens", o->all_tokens, "Train on every token, not only assistant turns / completions");
    cmd->add_flag("--packing", o->packing, "SFT: show the packed rows (best-fit decreasing, as TRL)");
    cmd->add_flag("--no-special-tokens", o->no_special_tokens, "--text: do not add BOS/EOS");
    cmd->add_option("--limit", o->limit, "Examples to show (not with --json)")->capture_default_str();
    cmd->add_flag("--json", o->json, "One JSON object per input: input_ids (and labels)");
    cmd->callback([o, text, data]() {
        if (text->count() == 0 && data->count() == 0) {
            throw InputError("give --text or --data");
        }
        const Tokenizer tok = Tokenizer::load(o->tokenizer);
        Output          out(!o->json && isatty(fileno(stdout)));
        if (text->count()) {
            show_text(tok, *o, out);
            out.flush();
        } else {
            show_data(tok, *o, out);
        }
    });
}

}  // namespace paft
