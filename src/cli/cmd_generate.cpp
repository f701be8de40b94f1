// paft generate: text from a model (and adapters) for one prompt, streamed to standard output, or
// for every record of a dataset, written as JSON lines (AlpacaEval's {instruction, output,
// generator}). Long runs write OUT.partial record by record and resume from it. Under mpirun the
// records are shared among the ranks and rank 0 writes.
#include "cli/commands.h"
#include "cli/generation_setup.h"
#include "core/communicator.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/fs.h"
#include "io/output_lock.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

struct GenerateOptions {
    GenerationFlags flags;
    std::string     prompt, data, out, generator;
    bool            chat = false, overwrite = false;
    int             batch = 8;
};

// The fields paft adds to each record; a resumed record is compared on the others.
const char * const kAddedFields[] = {"output", "generator", "finish_reason"};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The folder's own name: "zephyr" for "models/zephyr", "models/zephyr/" or "models/zephyr/.".
std::string folder_name(const std::string & dir) {
    std::filesystem::path p = std::filesystem::absolute(dir).lexically_normal();
    if (!p.has_filename()) {
        p = p.parent_path();
    }
    return p.filename().string();
}

void write_or_fail(std::FILE * f, const std::string & text, const std::string & what) {
    if (std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fflush(f) != 0) {
        throw RuntimeFailure(fmt::format("cannot write to {}: {}", what, std::strerror(errno)));
    }
}

// Raw text goes to the tokenizer with its special tokens, unless --chat asks for the template.
std::vector<int32_t> user_prompt(const GenerationSetup & setup, const GenerateOptions & o, const std::string & text,
                                 const std::string & where) {
    if (o.chat) {
        return setup.chat_prompt(ojson::array({{{"role", "user"}, {"content", text}}}), where);
    }
    if (!o.flags.system.empty()) {
        throw InputError(fmt::format("{}: --system applies to chat prompts: add --chat", where));
    }
    return setup.text_prompt(text);
}

// A record's prompt: its messages (always through the chat template), or its prompt or
// instruction text.
std::vector<int32_t> record_prompt(const GenerationSetup & setup, const GenerateOptions & o, const Record & r) {
    const ojson &        v = r.value;
    std::vector<int32_t> ids;
    if (v.contains("messages")) {
        if (!v["messages"].is_array() || v["messages"].empty()) {
            throw InputError(fmt::format("{}: 'messages' must be a non-empty list of {{role, content}} objects, "
                                         "found {}",
                                         r.where, json_snippet(v["messages"])));
        }
        ids = setup.chat_prompt(v["messages"], r.where);
    } else {
        const char * key = v.contains("prompt") ? "prompt" : v.contains("instruction") ? "instruction" : nullptr;
        if (!key) {
            throw InputError(fmt::format("{}: a record needs 'prompt', 'instruction' or 'messages'", r.where));
        }
        if (!v[key].is_string()) {
            throw InputError(fmt::format("{}: '{}' must be a string, found {}", r.where, key, json_snippet(v[key])));
        }
        ids = user_prompt(setup, o, v[key].get<std::string>(), r.where);
    }
    if (ids.empty()) {
        throw InputError(fmt::format("{}: the prompt has no tokens", r.where));
    }
    return ids;
}

void check_vocabulary(const std::vector<int32_t> & ids, int V, const std::string & where) {
    for (int32_t id : ids) {
        if (id >= V) {
            throw InputError(fmt::format("{}: token id {} is outside the model's vocabulary [0, {}) (the tokenizer "
                                         "does not belong to this model?)",
                                         where, id, V));
        }
    }
}

// transformers generates past max_position_embeddings without complaint; say so once.
void warn_long_prompts(const std::vector<std::vector<int32_t>> & prompts, const GenerationSetup & setup) {
    const int limit = setup.config().max_position_embeddings;
    size_t    over  = 0;
    for (const auto & p : prompts) {
        over += (long) p.size() + setup.options().max_new_tokens > limit;
    }
    if (over > 0) {
        fmt::print(stderr,
                   "paft: warning: {} prompt(s) plus --max-new-tokens exceed the model's max_position_embeddings "
                   "({}); generating anyway, as transformers does\n",
                   over, limit);
    }
}

std::string output_line(const Record & r, const Generation & g, const std::string & generator) {
    ojson j            = r.value;
    j["output"]        = g.text;
    j["generator"]     = generator;
    j["finish_reason"] = g.finish_reason;
    return j.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n";
}

// The records OUT.partial already holds (complete lines; a line cut by a crash is dropped from the
// file), each checked against the input record at the same index.
size_t resume_partial(const std::string & partial, const std::vector<Record> & records, const std::string & generator) {
    if (!path_exists(partial)) {
        return 0;
    }
    std::string text = read_file(partial);
    if (!text.empty() && text.back() != '\n') {
        text.resize(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
        write_file_atomic(partial, text);
    }
    size_t done = 0;
    for (size_t start = 0; start < text.size(); done++) {
        const size_t      end   = text.find('\n', start);
        const std::string where = fmt::format("{}:{}", partial, done + 1);
        ojson             line;
        try {
            check_json_depth(std::string_view(text).substr(start, end - start), where);
            line = ojson::parse(text.substr(start, end - start));
        } catch (const ojson::exception &) {
            throw InputError(fmt::format("{}: not valid JSON; delete {} to start over", where, partial));
        }
        start = end + 1;
        if (done >= records.size()) {
            throw InputError(fmt::format("{}: more records than the input has; delete {} to start over", where,
                                         partial));
        }
        bool same = line.is_object() && line.value("generator", "") == generator;
        for (const auto & [key, value] : records[done].value.items()) {
            const bool added = std::find(std::begin(kAddedFields), std::end(kAddedFields), key) != std::end(kAddedFields);
            same             = same && (added || (line.contains(key) && line[key] == value));
        }
        if (!same) {
            throw InputError(fmt::format("{}: does not match {} (another input or --generator?); delete {} to start "
                                         "over",
                                         where, records[done].where, partial));
        }
    }
    return done;
}

void generate_one(GenerationSetup & setup, const GenerateOptions & o) {
    const std::vector<int32_t> ids = user_prompt(setup, o, o.prompt, "--prompt");
    if (ids.empty()) {
        throw InputError("--prompt: the prompt has no tokens");
    }
    warn_long_prompts({ids}, setup);
    Decoder & decoder = setup.decoder();
    check_vocabulary(ids, decoder.vocab_size(), "--prompt");
    const auto start = std::chrono::steady_clock::now();
    const auto out   = generate(decoder, setup.tokenizer(), {ids}, setup.options(), 1,
                                [](size_t, const std::string & piece) { write_or_fail(stdout, piece, "standard output"); });
    write_or_fail(stdout, "\n", "standard output");
    fmt::print(stderr, "{} tokens, finish_reason {}, {:.1f} tokens/s\n", out[0].tokens.size(), out[0].finish_reason,
               (double) out[0].tokens.size() / seconds_since(start));
}

// Records [done, n) across the ranks of an MPI job, in rounds: each rank generates a contiguous
// share of the round's records, rank 0 gathers the round's lines and appends them to the output
// in order (a killed job resumes after the last whole round). Sampling draws are keyed by the
// record's index, as in one process.
void generate_across_ranks(GenerationSetup & setup, const GenerateOptions & o, const std::vector<Record> & records,
                           const std::vector<std::vector<int32_t>> & prompts, size_t done, std::FILE * f,
                           const std::string & target, const std::string & generator) {
    Communicator & ranks     = world();
    const size_t   N         = (size_t) ranks.size(), rank = (size_t) ranks.rank();
    const size_t   per_round = N * (size_t) o.batch * 8;  // records: each rank's share keeps its batch full
    Progress       progress("generate", (long) records.size(), "rec");
    progress.update((long) done);
    double     tokens = 0;
    const auto start  = std::chrono::steady_clock::now();
    for (size_t at = done; at < records.size(); at += per_round) {
        const size_t      n       = std::min(per_round, records.size() - at);
        GenerationOptions options = setup.options();
        options.first_index       = at;
        const std::vector<std::vector<int32_t>> round(prompts.begin() + (long) at, prompts.begin() + (long) (at + n));
        const std::vector<Generation>           generations =
            generate_shared(setup.decoder(), setup.tokenizer(), round, options, o.batch, &ranks);
        if (rank == 0) {
            std::string lines;
            for (size_t i = 0; i < n; i++) {
                lines += output_line(records[at + i], generations[i], generator);
                tokens += (double) generations[i].tokens.size();
            }
            write_or_fail(f, lines, target);
        }
        progress.set_status(fmt::format("{:.1f} tok/s", tokens / seconds_since(start)));
        progress.update((long) (at + n));
    }
    progress.finish();
}

void generate_dataset(GenerationSetup & setup, const GenerateOptions & o) {
    Communicator &            ranks     = world();
    const std::string         generator = !o.generator.empty() ? o.generator : folder_name(o.flags.model);
    const std::vector<Record> records   = read_records(o.data);
    std::vector<std::vector<int32_t>> prompts;
    for (const Record & r : records) {
        prompts.push_back(record_prompt(setup, o, r));
    }
    if (ranks.rank() == 0) {
        warn_long_prompts(prompts, setup);
    }
    // Rank 0 owns the output (locked while it writes); every rank learns where it resumes.
    std::optional<OutputLock> lock;
    if (!o.out.empty() && ranks.rank() == 0) {
        lock.emplace(o.out, LockPlace::beside);
    }
    const std::string partial = o.out.empty() ? "" : o.out + ".partial";
    uint64_t          done    = partial.empty() || ranks.rank() != 0 ? 0 : resume_partial(partial, records, generator);
    ranks.broadcast(&done, sizeof done, 0);
    if (done > 0 && ranks.rank() == 0) {
        fmt::print(stderr, "resuming after the {} records already in {}\n", done, partial);
    }
    Decoder & decoder = setup.decoder();
    for (size_t i = done; i < records.size(); i++) {
        check_vocabulary(prompts[i], decoder.vocab_size(), records[i].where);
    }
    std::FILE * f = nullptr;
    if (ranks.rank() == 0) {
        f = partial.empty() ? stdout : std::fopen(partial.c_str(), "ab");
    }
    if (!ranks.all(ranks.rank() != 0 || f)) {
        throw RuntimeFailure(fmt::format("cannot open {} for writing", partial));
    }
    const std::string target = partial.empty() ? "standard output" : partial;
    // After a failure (a full disk) the partial file keeps the records complete so far, whole
    // lines only, and the next run continues after them; one that holds none is removed.
    struct PartialCleanup {
        std::FILE *         file;
        const std::string & path;
        bool                armed = true;
        ~PartialCleanup() {
            if (!armed || !file || file == stdout) {
                return;
            }
            std::fclose(file);  // what it still buffers may be lost: only whole lines count
            std::error_code   ec;
            const std::string text = [&] {
                std::ifstream in(path, std::ios::binary);
                return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            }();
            const size_t whole = text.rfind('\n');
            if (whole == std::string::npos) {
                std::filesystem::remove(path, ec);
            } else if (whole + 1 < text.size()) {
                std::filesystem::resize_file(path, whole + 1, ec);
            }
        }
    } cleanup{f, partial};
    if (ranks.size() > 1) {
        generate_across_ranks(setup, o, records, prompts, done, f, target, generator);
    } else {
        // Records are written in input order: one that finishes early waits for those before it.
        std::map<size_t, std::string> ready;
        size_t                        next_write = done;
        long                          tokens     = 0;
        Progress                      progress("generate", (long) records.size(), "rec");
        progress.update((long) done);
        const auto        start   = std::chrono::steady_clock::now();
        GenerationOptions options = setup.options();
        options.first_index       = done;
        const std::vector<std::vector<int32_t>> remaining(prompts.begin() + (long) done, prompts.end());
        generate(decoder, setup.tokenizer(), remaining, options, o.batch, {}, [&](size_t i, const Generation & g) {
            ready[done + i] = output_line(records[done + i], g, generator);
            for (; ready.count(next_write); next_write++) {
                write_or_fail(f, ready[next_write], target);
                ready.erase(next_write);
            }
            tokens += (long) g.tokens.size();
            progress.set_status(fmt::format("{:.1f} tok/s", (double) tokens / seconds_since(start)));
            progress.update((long) next_write);
        });
        progress.finish();
    }
    cleanup.armed = false;
    if (f && f != stdout) {
        if (std::fclose(f) != 0) {
            throw RuntimeFailure(fmt::format("cannot write to {}", partial));
        }
        std::filesystem::rename(partial, o.out);
        fmt::print(stderr, "wrote {} records to {}\n", records.size(), o.out);
    }
}

}  // namespace

void register_generate(CLI::App & app) {
    auto   o   = std::make_shared<GenerateOptions>();
    auto * cmd = app.add_subcommand("generate", "Generate text for a prompt (streamed) or a dataset (JSON lines out)");
    add_generation_flags(*cmd, o->flags);
    auto * prompt = cmd->add_option("--prompt", o->prompt, "Prompt text; the completion is streamed to standard output");
    auto * data   = cmd->add_option("--data", o->data,
                                    "Records with 'prompt', 'instruction' or 'messages' (JSON lines or a JSON array)");
    prompt->excludes(data);
    cmd->add_flag("--chat", o->chat, "Put prompts through the chat template as a user message");
    cmd->add_option("--batch", o->batch, "Sequences decoded together")->capture_default_str();
    cmd->add_option("--out", o->out, "--data: output JSON lines (default: standard output)");
    cmd->add_flag("--overwrite", o->overwrite, "Replace an existing --out");
    cmd->add_option("--generator", o->generator, "The records' 'generator' field (default: the model folder's name)");
    cmd->callback([o, prompt, data]() {
        if (prompt->count() == 0 && data->count() == 0) {
            throw InputError("give --prompt or --data");
        }
        check_generation_flags(o->flags);
        if (o->batch < 1) {
            throw InputError(fmt::format("--batch {} must be at least 1", o->batch));
        }
        if (prompt->count() && !o->out.empty()) {
            throw InputError("--out is for --data (--prompt streams to standard output)");
        }
        std::vector<NamedPath> inputs = {{o->data, "--data"}, {o->flags.model, "--model"}};
        for (const std::string & a : o->flags.adapters) {
            inputs.push_back({a, "--adapter"});
        }
        check_output_apart(o->out, "--out", inputs);
        if (!o->out.empty() && path_exists(o->out) && !o->overwrite) {
            throw InputError(fmt::format("{} exists: add --overwrite to replace it", o->out));
        }
        if (prompt->count() && world().size() > 1) {
            throw InputError("--prompt streams one completion from one process: run it without mpirun (--data "
                             "shares its records among the ranks)");
        }
        GenerationSetup setup(o->flags);
        if (prompt->count()) {
            generate_one(setup, *o);
        } else {
            generate_dataset(setup, *o);
        }
    });
}

}  // namespace paft
