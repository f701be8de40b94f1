#include "train/pretrain.h"

#include "core/backend.h"
#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/records.h"
#include "io/fs.h"
#include "io/json_snippet.h"
#include "io/output_lock.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/presets.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/step_loop.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace paft {

using ojson = nlohmann::ordered_json;

namespace {

void require(bool ok, const char * flag, const char * requirement, const std::string & value) {
    if (!ok) {
        throw InputError(fmt::format("{} must be {}, got {}", flag, requirement, value));
    }
}

// A document's token ids: text through the tokenizer (special tokens as it adds them, then EOS,
// as plain-text SFT examples are encoded), or pre-tokenized ids checked against the vocabulary.
// Empty when the encoder skipped it (the reason is in `report`).
std::vector<int32_t> document_ids(const Record & r, const ExampleEncoder & encoder, int vocab, DataReport & report) {
    if (r.value.contains("text")) {
        const Record              text{ojson{{"text", r.value["text"]}}, r.where};
        std::optional<SftExample> ex = encoder.encode_sft(text, report);
        return ex ? std::move(ex->input_ids) : std::vector<int32_t>();
    }
    if (!r.value.contains("input_ids")) {
        throw InputError(fmt::format("{}: a pre-training document needs 'text' (or pre-tokenized 'input_ids')",
                                     r.where));
    }
    const ojson & v = r.value["input_ids"];
    if (!v.is_array()) {
        throw InputError(fmt::format("{}: 'input_ids' must be a list of token ids, found {}", r.where,
                                     json_snippet(v)));
    }
    std::vector<int32_t> ids;
    ids.reserve(v.size());
    for (const ojson & x : v) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= vocab) {
            throw InputError(fmt::format("{}: 'input_ids' must hold integers in [0, {}) (the tokenizer's "
                                         "vocabulary), found {}",
                                         r.where, vocab, json_snippet(x)));
        }
        ids.push_back(x.get<int32_t>());
    }
    return ids;
}

// The options as paft_pretrain.json holds them (resume and the display setting left out).
ojson options_json(const PretrainOptions & o) {
    return ojson{{"data", o.data},
                 {"tokenizer", o.tokenizer_dir},
                 {"output_dir", o.output_dir},
                 {"preset", o.model_config.empty() ? o.preset : ""},
                 {"model_config", o.model_config},
                 {"seq_len", o.seq_len},
                 {"per_device_train_batch_size", o.batch_size},
                 {"gradient_accumulation_steps", o.gradient_accumulation_steps},
                 {"learning_rate", o.learning_rate},
                 {"num_train_epochs", o.epochs},
                 {"max_steps", o.max_steps},
                 {"warmup_ratio", o.warmup_ratio},
                 {"lr_scheduler_type", o.lr_scheduler_type},
                 {"weight_decay", o.weight_decay},
                 {"max_grad_norm", o.max_grad_norm},
                 {"adam_beta1", 0.9},
                 {"adam_beta2", o.adam_beta2},
                 {"adam_epsilon", 1e-8},
                 {"seed", o.seed},
                 {"threads", o.threads},
                 {"save_steps", o.save_steps},
                 {"logging_steps", o.logging_steps},
                 {"dtype", o.dtype}};
}

// (offset, count) in floats of every tensor with two dimensions: the tensors weight decay applies to.
std::vector<std::pair<size_t, size_t>> decayed_ranges(const ParamLayout & layout) {
    std::vector<std::pair<size_t, size_t>> ranges;
    for (const ParamEntry & e : layout.entries()) {
        if (e.shape.size() >= 2) {
            ranges.emplace_back(e.offset, e.numel());
        }
    }
    return ranges;
}

// params *= factor over `ranges` (AdamW's decoupled decay p (1 - lr wd), the factor rounded to float
// once, as torch applies a Python scalar to a float32 tensor).
void apply_weight_decay(float * params, const std::vector<std::pair<size_t, size_t>> & ranges, float factor) {
    if (factor == 1.0f) {
        return;
    }
    for (const auto & [offset, count] : ranges) {
        for (size_t i = offset; i < offset + count; i++) {
            params[i] *= factor;
        }
    }
}

class Pretrainer : private StepTrainer {
public:
    explicit Pretrainer(const PretrainOptions & options);
    PretrainSummary run();

private:
    RunOutputGuard * guard_ = nullptr;  // while run() writes: told of each checkpoint
    void       gather_rows(const size_t * rows, int count);
    const std::vector<size_t> & order_of(long epoch);
    void       start_or_resume();
    void       write_model();

    // The step loop's parts (train/step_loop.h).
    float *     grads() override { return grads_.data(); }
    size_t      grad_count() override { return grads_.size(); }
    StepMetrics compute_gradients(long step) override;
    void        update(double lr) override;
    void        save_checkpoint(long step) override;

    PretrainOptions                        o_;
    std::unique_ptr<Backend>               backend_;
    Tokenizer                              tokenizer_;
    std::shared_ptr<Model>                 model_;  // trained in place; the transformer reads it
    Batch                                  corpus_;  // [rows, T] every packed row, doc_start set
    std::vector<int>                       row_targets_, row_tokens_;  // [rows] targets, real tokens
    ParallelTransformer                    transformer_;
    std::unique_ptr<Optimizer>             optimizer_;
    Schedule                               schedule_;
    std::vector<std::pair<size_t, size_t>> decayed_;
    std::vector<float>                     grads_;  // [parameters] the step's gradient
    Batch                                  micro_;  // the micro-batch being run (buffers reused)
    std::vector<float>                     dlogp_;  // [micro rows * T]
    std::vector<size_t>                    order_;  // the rows of epoch order_epoch_, shuffled
    long                                   order_epoch_ = -1;
    long          steps_per_epoch_ = 1, total_steps_ = 1, start_step_ = 0;
    StepLoopState loop_;  // metric window and num_tokens, kept in checkpoints
    bool          writes_ = true;  // rank 0 of an MPI job (or alone) writes the files
    std::string fingerprint_;  // of the rows and options, checked on resume
};

std::shared_ptr<Model> initial_model(const PretrainOptions & o, const Tokenizer & tokenizer) {
    return Model::random(pretrain_model_config(o, tokenizer), o.seed);
}

Pretrainer::Pretrainer(const PretrainOptions & options)
    : o_(options), backend_(make_backend(o_.threads)), tokenizer_(Tokenizer::load(o_.tokenizer_dir)),
      model_(initial_model(o_, tokenizer_)), transformer_(*backend_, model_, backend_->threads(), &world()),
      writes_(world().rank() == 0) {
    const int              vocab = model_->config().vocab_size;
    std::vector<PackedRow> rows  = pretrain_rows(o_, tokenizer_, vocab);
    corpus_ = batch_from_packed(rows, tokenizer_.pad_id().value_or(tokenizer_.eos_id().value_or(0)), vocab);
    for (int r = 0; r < corpus_.B; r++) {
        const size_t at = (size_t) r * corpus_.T;
        row_targets_.push_back((int) std::count_if(corpus_.targets.begin() + at, corpus_.targets.begin() + at + corpus_.T,
                                                   [](int32_t t) { return t >= 0; }));
        row_tokens_.push_back((int) std::count(corpus_.attention_mask.begin() + at,
                                               corpus_.attention_mask.begin() + at + corpus_.T, 1));
    }
    const long per_step = (long) o_.batch_size * o_.gradient_accumulation_steps;
    steps_per_epoch_    = (corpus_.B + per_step - 1) / per_step;
    total_steps_        = o_.max_steps > 0 ? o_.max_steps : (long) o_.epochs * steps_per_epoch_;
    schedule_           = Schedule{schedule_from_name(o_.lr_scheduler_type), o_.learning_rate,
                         warmup_steps_for(total_steps_, 0, o_.warmup_ratio), total_steps_};
    // Decay is applied by the run itself, to the matrices only (see pretrain.h).
    OptimizerConfig adam;
    adam.beta2   = o_.adam_beta2;
    optimizer_   = make_optimizer(adam, model_->size());
    decayed_     = decayed_ranges(model_->layout());
    grads_.assign(model_->size(), 0.0f);

    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (size_t n = 0; n < corpus_.input_ids.size(); n++) {
        h = hash_u64(h, (uint64_t) (uint32_t) corpus_.input_ids[n], (uint64_t) (uint32_t) corpus_.doc_start[n]);
    }
    // Paths may change (a moved folder) and so may the thread count (the run then resumes, though
    // not bit for bit); the tokens and every other option must not.
    ojson fp = options_json(o_);
    for (const char * key : {"data", "tokenizer", "output_dir", "threads"}) {
        fp.erase(key);
    }
    fp["vocab_size"] = vocab;
    for (char c : fp.dump()) {
        h = hash_u64(h, (uint64_t) (unsigned char) c, 1);
    }
    fingerprint_ = fmt::format("{:016x}", h);
}

const std::vector<size_t> & Pretrainer::order_of(long epoch) {
    if (epoch != order_epoch_) {
        order_       = epoch_order((size_t) corpus_.B, o_.seed, epoch);
        order_epoch_ = epoch;
    }
    return order_;
}

// Copies `count` rows of the corpus into micro_ (its buffers keep their capacity between steps).
void Pretrainer::gather_rows(const size_t * rows, int count) {
    const size_t T = (size_t) corpus_.T;
    micro_.B       = count;
    micro_.T       = corpus_.T;
    for (auto [dst, src] : {std::pair{&micro_.input_ids, &corpus_.input_ids},
                            std::pair{&micro_.attention_mask, &corpus_.attention_mask},
                            std::pair{&micro_.position_ids, &corpus_.position_ids},
                            std::pair{&micro_.targets, &corpus_.targets}, std::pair{&micro_.doc_start, &corpus_.doc_start}}) {
        dst->resize((size_t) count * T);
        for (int i = 0; i < count; i++) {
            std::memcpy(dst->data() + i * T, src->data() + rows[i] * T, T * sizeof(int32_t));
        }
    }
}

// Forward and backward of the step's rows, micro-batch by micro-batch, into grads_; the loss is
// the mean over every target of the step, so each position's d/d(logp) is -1 / (step's targets).
StepMetrics Pretrainer::compute_gradients(long step) {
    const std::vector<size_t> & order    = order_of(step / steps_per_epoch_);
    const size_t                per_step = (size_t) o_.batch_size * o_.gradient_accumulation_steps;
    const size_t                begin    = (size_t) (step % steps_per_epoch_) * per_step;
    const size_t                end      = std::min(order.size(), begin + per_step);
    long                        targets  = 0;
    StepMetrics                 r;
    for (size_t i = begin; i < end; i++) {
        targets += row_targets_[order[i]];
        r.tokens += row_tokens_[order[i]];
    }
    double nll = 0;
    for (size_t first = begin; first < end; first += o_.batch_size) {
        const int count = (int) std::min<size_t>(o_.batch_size, end - first);
        gather_rows(order.data() + first, count);
        dlogp_.resize(micro_.targets.size());
        for (size_t n = 0; n < dlogp_.size(); n++) {
            dlogp_[n] = micro_.targets[n] >= 0 ? -1.0f / (float) targets : 0.0f;
        }
        const std::vector<float> & logp =
            transformer_.forward_backward(micro_, nullptr, dlogp_.data(), {nullptr, grads_.data()});
        for (size_t n = 0; n < logp.size(); n++) {
            nll -= micro_.targets[n] >= 0 ? (double) logp[n] : 0.0;
        }
    }
    r.values["loss"] = nll / (double) std::max(1L, targets);
    return r;
}

// AdamW's decoupled decay on the matrices, then the Adam update (the optimizer's own weight_decay
// is 0): torch's order for two parameter groups.
void Pretrainer::update(double lr) {
    apply_weight_decay(model_->data(), decayed_, (float) (1.0 - lr * o_.weight_decay));
    optimizer_->step(model_->data(), grads_.data(), lr);
}

void Pretrainer::save_checkpoint(long step) {
    if (!writes_) {
        return;
    }
    TrainerState state;
    state.global_step  = step;
    state.total_steps  = total_steps_;
    state.num_tokens   = loop_.num_tokens;
    state.fingerprint  = fingerprint_;
    state.window_sums  = loop_.window_sums;
    state.window_steps = loop_.window_steps;
    state.log_bytes    = metrics_bytes(o_.output_dir);
    write_checkpoint(o_.output_dir, state, *optimizer_,
                     [&](const std::string & folder) { model_->save(folder, DType::F32); });
    if (guard_) {
        guard_->checkpointed(state.log_bytes);
    }
}

// A fresh run refuses a folder that holds one; a resumed run continues from its newest checkpoint
// (a folder with none starts afresh).
void Pretrainer::start_or_resume() {
    make_dirs(o_.output_dir);
    const std::optional<long> last = latest_checkpoint_step(o_.output_dir);
    if (last && !o_.resume) {
        throw InputError(fmt::format("{} already holds a run (checkpoint-{}); pass --resume to continue it, or "
                                     "choose another output folder",
                                     o_.output_dir, *last));
    }
    std::optional<TrainerState> state;
    if (last) {
        state = read_latest_checkpoint(o_.output_dir, *optimizer_, [&](const std::string & folder) {
            std::shared_ptr<Model> saved = Model::load_f32(folder);
            if (saved->size() != model_->size()) {
                throw InputError(fmt::format("{}: the model's shape differs from this run's", folder));
            }
            std::copy(saved->data(), saved->data() + saved->size(), model_->data());
        });
    }
    if (!state) {
        ojson j = options_json(o_);
        j["parameters"]      = model_->size();
        j["vocab_size"]      = model_->config().vocab_size;
        j["rows"]            = corpus_.B;
        j["row_tokens"]      = std::accumulate(row_tokens_.begin(), row_tokens_.end(), 0L);
        j["steps_per_epoch"] = steps_per_epoch_;
        j["total_steps"]     = total_steps_;
        j["warmup_steps"]    = schedule_.warmup_steps;
        if (writes_) {
            write_file_atomic(o_.output_dir + "/paft_pretrain.json", j.dump(2) + "\n");
            truncate_file(o_.output_dir + "/metrics.jsonl", 0);
        }
        return;
    }
    if (state->fingerprint != fingerprint_) {
        throw InputError(fmt::format("{}: the data or options differ from the run being resumed (compare with "
                                     "{}/paft_pretrain.json)",
                                     o_.output_dir, o_.output_dir));
    }
    start_step_        = state->global_step;
    loop_.num_tokens   = state->num_tokens;
    loop_.window_sums  = state->window_sums;
    loop_.window_steps = state->window_steps;
    if (writes_) {
        truncate_file(o_.output_dir + "/metrics.jsonl", state->log_bytes);
    }
}

// The model as transformers loads it: weights, config.json, generation_config.json, tokenizer.
void Pretrainer::write_model() {
    model_->save(o_.output_dir, o_.dtype == "bf16" ? DType::BF16 : DType::F32);
    copy_files_if_present(o_.tokenizer_dir, o_.output_dir, kTokenizerFiles);
    ojson g = {{"_from_model_config", true}};
    if (model_->config().bos_token_id >= 0) {
        g["bos_token_id"] = model_->config().bos_token_id;
    }
    if (model_->config().eos_token_id >= 0) {
        g["eos_token_id"] = model_->config().eos_token_id;
    }
    if (tokenizer_.pad_id()) {
        g["pad_token_id"] = *tokenizer_.pad_id();
    }
    write_file_atomic(o_.output_dir + "/generation_config.json", g.dump(2) + "\n");
}

PretrainSummary Pretrainer::run() {
    std::optional<RunOutputGuard> guard;  // after a failure: the last checkpoint, or nothing
    std::optional<OutputLock>     lock;   // the folder is this run's while it writes (rank 0 writes)
    if (writes_ && !o_.overwrite && !latest_checkpoint_step(o_.output_dir)) {
        OutputLock::refuse_existing(o_.output_dir, "--out");  // a model, not a run: never replaced unasked
    }
    if (writes_) {
        guard.emplace(o_.output_dir, std::vector<std::string>{"metrics.jsonl", "paft_pretrain.json"});
        lock.emplace(o_.output_dir);
    }
    guard_ = guard ? &*guard : nullptr;
    start_or_resume();
    if (guard && start_step_ > 0) {
        guard->checkpointed(metrics_bytes(o_.output_dir));
    }
    PretrainSummary summary;
    summary.resumed = start_step_ > 0;
    StepLoopConfig loop;
    loop.label           = "pretrain";
    loop.output_dir      = o_.output_dir;
    loop.schedule        = schedule_;
    loop.total_steps     = total_steps_;
    loop.steps_per_epoch = steps_per_epoch_;
    loop.logging_steps   = o_.logging_steps;
    loop.save_steps      = o_.save_steps;
    loop.max_grad_norm   = o_.max_grad_norm;
    loop.plain_progress  = o_.plain_progress;
    loop.writes          = writes_;
    static_cast<StepLoopResult &>(summary) = run_step_loop(*this, loop, start_step_, loop_);
    if (writes_) {
        write_model();
    }
    if (latest_checkpoint_step(o_.output_dir) != total_steps_) {
        save_checkpoint(total_steps_);
    }
    if (guard) {
        guard->commit();
    }
    return summary;
}

}  // namespace

void validate(const PretrainOptions & o) {
    for (const auto & [value, flag] : {std::pair{&o.data, "--data"}, std::pair{&o.tokenizer_dir, "--tokenizer"},
                                       std::pair{&o.output_dir, "--out"}}) {
        if (value->empty()) {
            throw InputError(fmt::format("{} is required", flag));
        }
    }
    check_output_apart(o.output_dir, "--out",
                       {{o.data, "--data"}, {o.tokenizer_dir, "--tokenizer"}, {o.model_config, "--model-config"}});
    require(o.seq_len >= 2, "--seq-len", "at least 2", std::to_string(o.seq_len));
    require(o.batch_size >= 1, "--batch-size", "at least 1", std::to_string(o.batch_size));
    require(o.gradient_accumulation_steps >= 1, "--gradient-accumulation-steps", "at least 1",
            std::to_string(o.gradient_accumulation_steps));
    require(std::isfinite(o.learning_rate) && o.learning_rate >= 0, "--learning-rate", "a number >= 0",
            fmt::format("{}", o.learning_rate));
    require(o.max_steps > 0 || o.epochs >= 1, "--epochs", "at least 1 (or --max-steps given)",
            std::to_string(o.epochs));
    require(o.max_steps == -1 || o.max_steps > 0, "--max-steps", "positive (or -1: by epochs)",
            std::to_string(o.max_steps));
    require(o.warmup_ratio >= 0 && o.warmup_ratio <= 1, "--warmup-ratio", "in [0, 1]", fmt::format("{}", o.warmup_ratio));
    schedule_from_name(o.lr_scheduler_type);
    require(o.weight_decay >= 0, "--weight-decay", ">= 0", fmt::format("{}", o.weight_decay));
    require(o.max_grad_norm >= 0, "--max-grad-norm", ">= 0 (0: no clipping)", fmt::format("{}", o.max_grad_norm));
    require(o.adam_beta2 >= 0 && o.adam_beta2 < 1, "--adam-beta2", "in [0, 1)", fmt::format("{}", o.adam_beta2));
    require(o.threads >= 0, "--threads", ">= 0 (0: every core)", std::to_string(o.threads));
    require(o.save_steps >= 0, "--save-steps", ">= 0", std::to_string(o.save_steps));
    require(o.logging_steps >= 0, "--logging-steps", ">= 0", std::to_string(o.logging_steps));
    require(o.dtype == "f32" || o.dtype == "bf16", "--dtype", "f32 or bf16", "'" + o.dtype + "'");
}

ModelConfig pretrain_model_config(const PretrainOptions & o, const Tokenizer & tokenizer) {
    ModelConfig c = o.model_config.empty() ? model_preset(o.preset)
                                           : parse_model_config(read_file(o.model_config), o.model_config);
    c.vocab_size   = tokenizer.vocab_size();
    c.bos_token_id = tokenizer.bos_id().value_or(-1);
    c.eos_token_id = tokenizer.eos_id().value_or(-1);
    if (o.seq_len > c.max_position_embeddings) {
        throw InputError(fmt::format("--seq-len {} is more than the model's max_position_embeddings ({})", o.seq_len,
                                     c.max_position_embeddings));
    }
    return c;
}

std::vector<PackedRow> pretrain_rows(const PretrainOptions & o, const Tokenizer & tokenizer, int vocab_size) {
    DataOptions data;
    data.max_length = 0;  // documents are cut into chunks below, not truncated
    const ExampleEncoder    encoder(tokenizer, nullptr, data);
    DataReport              report;
    std::vector<SftExample> chunks;
    size_t                  documents = 0;
    for_each_record(o.data, [&](Record && r) {
        report.records++;
        const std::vector<int32_t> ids = document_ids(r, encoder, vocab_size, report);
        if (ids.size() < 2) {
            if (!ids.empty()) {
                report.skipped.push_back(fmt::format("{}: a single token, nothing to predict", r.where));
            }
            return true;
        }
        documents++;
        for (size_t at = 0; at + 1 < ids.size(); at += (size_t) o.seq_len) {  // a last lone token predicts nothing
            const size_t end = std::min(ids.size(), at + (size_t) o.seq_len);
            SftExample   chunk;
            chunk.where     = r.where;
            chunk.input_ids = std::vector<int32_t>(ids.begin() + at, ids.begin() + end);
            chunk.labels    = chunk.input_ids;
            chunks.push_back(std::move(chunk));
        }
        return true;
    });
    print_data_report(o.data, report, documents);
    if (chunks.empty()) {
        throw InputError(fmt::format("{}: no document to train on (the file holds {} records; a document needs at "
                                     "least two tokens)",
                                     o.data, report.records));
    }
    return pack_examples(chunks, o.seq_len);
}

std::vector<size_t> epoch_order(size_t rows, uint64_t seed, long epoch) {
    std::vector<size_t> order(rows);
    std::iota(order.begin(), order.end(), 0);
    Random rng(hash_u64(seed, (uint64_t) epoch, 0x50524554524149ull));  // "PRETRAI"
    for (size_t i = order.size(); i > 1; i--) {  // Fisher-Yates
        std::swap(order[i - 1], order[rng.next_u64() % i]);
    }
    return order;
}

PretrainSummary run_pretrain(const PretrainOptions & options) {
    validate(options);
    Pretrainer trainer(options);
    return trainer.run();
}

}  // namespace paft
