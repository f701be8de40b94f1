#include "train/trainer.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/random.h"
#include "data/packing.h"
#include "io/fs.h"
#include "io/json_depth.h"
#include "io/output_lock.h"
#include "train/checkpoint.h"
#include "train/l1.h"
#include "train/recipe.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace paft {

using json = nlohmann::ordered_json;

namespace {

bool is_preference(Method m) {
    return m != Method::sft;
}

// The examples' token ids and the options that shape the data, as a short hash: a resumed run
// must see the same ones.
std::string data_fingerprint(const TrainData & d, const std::string & recipe) {
    uint64_t h   = 0x9E3779B97F4A7C15ull;
    auto     mix = [&](const std::vector<int32_t> & ids) {
        for (int32_t id : ids) {
            h = hash_u64(h, (uint64_t) (uint32_t) id, ids.size());
        }
        h = hash_u64(h, 0xABCDEFull, ids.size());
    };
    for (const auto * list : {&d.sft, &d.eval_sft}) {
        for (const SftExample & e : *list) {
            mix(e.input_ids);
            mix(e.labels);
        }
    }
    for (const auto * list : {&d.pref, &d.eval_pref}) {
        for (const PreferenceExample & e : *list) {
            mix(e.prompt_ids);
            mix(e.chosen_ids);
            mix(e.rejected_ids);
        }
    }
    for (char c : recipe) {
        h = hash_u64(h, (uint64_t) (unsigned char) c, 1);
    }
    return fmt::format("{:016x}", h);
}

LoraAdapter initial_adapter(const TrainOptions & o, const ModelConfig & config) {
    if (!o.init_adapter.empty()) {
        return LoraAdapter::load(o.init_adapter, config);
    }
    LoraAdapter a(config, o.lora);
    a.init_peft(o.seed);
    return a;
}

std::map<std::string, double> preference_metric_map(const PreferenceMetrics & m, Method method, const char * prefix) {
    const double n = std::max(1, m.pairs);
    std::map<std::string, double> out = {
        {"loss", m.loss / n},
        {"rewards/chosen", m.reward_chosen / n},
        {"rewards/rejected", m.reward_rejected / n},
        {"rewards/accuracies", m.reward_accuracy / n},
        {"rewards/margins", m.reward_margin / n},
        {"logps/chosen", m.logps_chosen / n},
        {"logps/rejected", m.logps_rejected / n},
    };
    if (method == Method::orpo) {
        out["nll_loss"]        = m.nll_loss / n;
        out["log_odds_ratio"]  = m.log_odds_ratio / n;
        out["log_odds_chosen"] = m.log_odds_chosen / n;
    }
    std::map<std::string, double> named;
    for (auto & [k, v] : out) {
        named[std::string(prefix) + k] = v;
    }
    return named;
}

}  // namespace

Trainer::Trainer(Backend & backend, std::shared_ptr<const Model> model, TrainOptions options, TrainData data,
                 int workers, Communicator * ranks)
    : backend_(backend), model_(model), options_(std::move(options)), data_(std::move(data)),
      label_(method_name(options_.method)), writes_(!ranks || ranks->rank() == 0),
      transformer_(backend, model, workers, ranks),
      adapter_(initial_adapter(options_, model->config())) {
    validate(options_);
    if (options_.gradient_checkpointing) {
        transformer_.set_recompute(true);
    }
    if (options_.method == Method::sft && options_.packing) {
        packed_ = pack_examples(data_.sft, options_.data.max_length);
    }
    const long n = units();
    if (n == 0) {
        throw InputError(fmt::format("{}: no example to train on", options_.train_data));
    }
    const long per_step = (long) options_.per_device_train_batch_size * options_.gradient_accumulation_steps;
    steps_per_epoch_    = (n + per_step - 1) / per_step;
    total_steps_        = options_.max_steps > 0 ? options_.max_steps
                                                 : (long) std::ceil(options_.num_train_epochs * steps_per_epoch_);
    total_steps_        = std::max(1L, total_steps_);
    schedule_           = Schedule{options_.lr_scheduler_type, options_.learning_rate,
                         warmup_steps_for(total_steps_, options_.warmup_steps, options_.warmup_ratio), total_steps_};
    optimizer_          = make_optimizer(options_.optimizer, adapter_.params().size());
    fingerprint_        = data_fingerprint(data_, recipe_yaml(options_));
}

long Trainer::units() const {
    if (options_.method == Method::sft) {
        return options_.packing ? (long) packed_.size() : (long) data_.sft.size();
    }
    return (long) data_.pref.size();
}

// The units of optimizer step `step`: its slice of the epoch's seeded shuffle (the last step of
// an epoch may be short).
std::vector<size_t> Trainer::step_units(long step) {
    const long epoch = step / steps_per_epoch_;
    if (epoch != order_epoch_) {
        order_.resize(units());
        std::iota(order_.begin(), order_.end(), 0);
        Random rng(hash_u64(options_.seed, (uint64_t) epoch, 0x5348554646ull));
        for (size_t i = order_.size(); i > 1; i--) {  // Fisher-Yates
            std::swap(order_[i - 1], order_[rng.next_u64() % i]);
        }
        order_epoch_ = epoch;
    }
    const size_t per_step = (size_t) options_.per_device_train_batch_size * options_.gradient_accumulation_steps;
    const size_t begin    = (size_t) (step % steps_per_epoch_) * per_step;
    const size_t end      = std::min(order_.size(), begin + per_step);
    return std::vector<size_t>(order_.begin() + begin, order_.begin() + end);
}

std::vector<const PreferenceExample *> Trainer::pairs_of(const std::vector<size_t> & units, bool eval) const {
    std::vector<const PreferenceExample *> out;
    for (size_t u : units) {
        out.push_back(eval ? &data_.eval_pref[u] : &data_.pref[u]);
    }
    return out;
}

namespace {

// Splits `units` into consecutive micro-batches of at most `size`.
std::vector<std::vector<size_t>> micro_batches(const std::vector<size_t> & units, int size) {
    std::vector<std::vector<size_t>> out;
    for (size_t i = 0; i < units.size(); i += size) {
        out.emplace_back(units.begin() + i, units.begin() + std::min(units.size(), i + size));
    }
    return out;
}

long real_tokens(const Batch & b) {
    return std::count(b.attention_mask.begin(), b.attention_mask.end(), 1);
}

}  // namespace

Trainer::StepResult Trainer::sft_step(const std::vector<size_t> & units, long step) {
    std::vector<Batch> batches;
    long               step_tokens = 0;
    for (const auto & micro : micro_batches(units, options_.per_device_train_batch_size)) {
        if (options_.packing) {
            std::vector<PackedRow> rows;
            for (size_t u : micro) {
                rows.push_back(packed_[u]);
            }
            batches.push_back(batch_from_packed(rows, data_.pad_id, model_->config().vocab_size));
        } else {
            std::vector<const SftExample *> ex;
            for (size_t u : micro) {
                ex.push_back(&data_.sft[u]);
            }
            batches.push_back(sft_batch(ex, data_.pad_id, model_->config().vocab_size));
        }
        step_tokens += batches.back().target_count();
    }
    StepResult r;
    double     nll = 0;
    for (size_t i = 0; i < batches.size(); i++) {
        const Batch &      b = batches[i];
        std::vector<float> dlogp(b.tokens());
        for (int n = 0; n < b.tokens(); n++) {  // known before the forward: the head's gradient is fused
            dlogp[n] = b.targets[n] >= 0 ? -1.0f / (float) step_tokens : 0.0f;
        }
        transformer_.set_training(true, options_.seed, (uint64_t) step * batches.size() + i);
        const std::vector<float> & logp = transformer_.forward_backward(b, &adapter_, dlogp.data(),
                                                                        {adapter_.grads().data(), nullptr});
        std::vector<float> unused;
        nll += sft_objective(b, logp, step_tokens, unused).nll_sum;
        r.tokens += real_tokens(b);
    }
    r.values["nll_loss"] = nll / (double) step_tokens;
    r.values["loss"]     = r.values["nll_loss"];
    return r;
}

// The micro-batches of `units` (train or eval pairs), each with its pairs' reference log-probs
// [chosen..., rejected...] (empty for reference-free losses), and the NLL tokens of them all (ORPO).
Trainer::PreferenceStepData Trainer::preference_batches(const std::vector<size_t> & units, int micro,
                                                        bool eval) const {
    const PreferenceConfig &    pc             = options_.preference;
    const bool                  prompt_targets = options_.method == Method::orpo && pc.orpo_prompt_nll;
    const std::vector<double> & chosen         = eval ? eval_ref_chosen_ : ref_chosen_;
    const std::vector<double> & rejected       = eval ? eval_ref_rejected_ : ref_rejected_;
    PreferenceStepData          d;
    for (const auto & m : micro_batches(units, micro)) {
        d.batches.push_back(preference_batch(pairs_of(m, eval), prompt_targets, data_.pad_id,
                                             model_->config().vocab_size));
        d.nll_tokens += chosen_target_count(d.batches.back());
        std::vector<double> ref;
        if (needs_reference(pc.loss)) {
            for (size_t u : m) {
                ref.push_back(chosen[u]);
            }
            for (size_t u : m) {
                ref.push_back(rejected[u]);
            }
        }
        d.refs.push_back(std::move(ref));
    }
    return d;
}

Trainer::StepResult Trainer::preference_step(const std::vector<size_t> & units, long step) {
    const PreferenceConfig & pc = options_.preference;
    const PreferenceStepData d = preference_batches(units, options_.per_device_train_batch_size, false);
    StepResult        r;
    PreferenceMetrics sum;
    for (size_t i = 0; i < d.batches.size(); i++) {
        const PreferenceBatch & pb = d.batches[i];
        transformer_.set_training(true, options_.seed, (uint64_t) step * d.batches.size() + i);
        const std::vector<float> & logp = transformer_.forward(pb.batch, &adapter_);
        std::vector<float>         dlogp;
        sum.add(preference_objective(pc, pb, logp, d.refs[i], (int) units.size(), d.nll_tokens, dlogp));
        transformer_.backward(pb.batch, &adapter_, dlogp.data(), {adapter_.grads().data(), nullptr});
        r.tokens += real_tokens(pb.batch);
    }
    r.values = preference_metric_map(sum, options_.method, "");
    return r;
}

// Reference log-probs of every pair (train, then eval), with the adapter the run starts from
// turned off (TRL's PEFT case) or, with --init-adapter, a frozen copy of it. Computed once, in the
// first epoch's micro-batches, so that step 0 sees exactly the policy's own numbers; cached in the
// output folder for resumed runs.
void Trainer::compute_reference() {
    if (!is_preference(options_.method) || !needs_reference(options_.preference.loss)) {
        return;
    }
    const std::string path = options_.output_dir + "/reference_logps.json";
    if (path_exists(path)) {
        const std::string text = read_file(path);
        check_json_depth(text, path);
        json j = json::parse(text, nullptr, false);
        if (!j.is_discarded() && j.value("fingerprint", "") == fingerprint_) {
            ref_chosen_        = j["chosen"].get<std::vector<double>>();
            ref_rejected_      = j["rejected"].get<std::vector<double>>();
            eval_ref_chosen_   = j["eval_chosen"].get<std::vector<double>>();
            eval_ref_rejected_ = j["eval_rejected"].get<std::vector<double>>();
            return;
        }
    }
    const LoraAdapter * ref_adapter = options_.init_adapter.empty() ? nullptr : &adapter_;  // not yet trained
    const int           micro       = options_.per_device_train_batch_size;
    auto                run         = [&](bool eval, std::vector<double> & chosen, std::vector<double> & rejected) {
        const size_t n = eval ? data_.eval_pref.size() : data_.pref.size();
        chosen.assign(n, 0.0);
        rejected.assign(n, 0.0);
        std::vector<size_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        if (!eval) {  // the order of step 0 onwards
            order.clear();
            for (long s = 0; s < steps_per_epoch_; s++) {
                for (size_t u : step_units(s)) {
                    order.push_back(u);
                }
            }
        }
        if (n == 0) {
            return;
        }
        Progress progress(label_ + (eval ? " eval reference" : " reference"), (long) n, "pairs", plain_progress_);
        size_t   done = 0;
        transformer_.set_training(false);
        for (const auto & m : micro_batches(order, micro)) {
            PreferenceBatch pb = preference_batch(pairs_of(m, eval), false, data_.pad_id, model_->config().vocab_size);
            CompletionLogps c  = completion_logps(pb, transformer_.forward(pb.batch, ref_adapter));
            for (size_t i = 0; i < m.size(); i++) {
                chosen[m[i]]   = c.sum[i];
                rejected[m[i]] = c.sum[m.size() + i];
            }
            progress.update((long) (done += m.size()));
        }
        progress.finish();
    };
    run(false, ref_chosen_, ref_rejected_);
    run(true, eval_ref_chosen_, eval_ref_rejected_);
    json j = {{"fingerprint", fingerprint_},          {"chosen", ref_chosen_},
              {"rejected", ref_rejected_},            {"eval_chosen", eval_ref_chosen_},
              {"eval_rejected", eval_ref_rejected_}};
    if (writes_) {
        write_file_atomic(path, j.dump() + "\n");
    }
}

void Trainer::evaluate(long step) {
    const bool pref = is_preference(options_.method);
    const size_t n  = pref ? data_.eval_pref.size() : data_.eval_sft.size();
    if (n == 0) {
        return;
    }
    std::vector<size_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    transformer_.set_training(false);
    std::map<std::string, double> metrics;
    if (pref) {
        const PreferenceStepData d = preference_batches(all, options_.per_device_eval_batch_size, true);
        PreferenceMetrics        sum;
        for (size_t i = 0; i < d.batches.size(); i++) {
            std::vector<float> dlogp;
            sum.add(preference_objective(options_.preference, d.batches[i],
                                         transformer_.forward(d.batches[i].batch, &adapter_), d.refs[i], (int) n,
                                         d.nll_tokens, dlogp));
        }
        metrics = preference_metric_map(sum, options_.method, "eval_");
    } else {
        std::vector<Batch> batches;
        long               tokens = 0;
        for (const auto & m : micro_batches(all, options_.per_device_eval_batch_size)) {
            std::vector<const SftExample *> ex;
            for (size_t u : m) {
                ex.push_back(&data_.eval_sft[u]);
            }
            batches.push_back(sft_batch(ex, data_.pad_id, model_->config().vocab_size));
            tokens += batches.back().target_count();
        }
        double nll = 0;
        for (const Batch & b : batches) {
            std::vector<float> unused;
            nll += sft_objective(b, transformer_.forward(b, &adapter_), tokens, unused).nll_sum;
        }
        metrics["eval_loss"] = nll / (double) tokens;
    }
    json line = {{"step", step}, {"epoch", (double) step / steps_per_epoch_}};
    for (const auto & [k, v] : metrics) {
        line[k] = v;
    }
    log_line(line.dump());
}

void Trainer::log_line(const std::string & json_line) {
    if (writes_) {
        append_line(options_.output_dir + "/metrics.jsonl", json_line);
    }
}

void Trainer::save_checkpoint(long step) {
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
    state.log_bytes    = metrics_bytes(options_.output_dir);
    write_checkpoint(options_.output_dir, state, adapter_, *optimizer_, options_.model);
    if (guard_) {
        guard_->checkpointed(state.log_bytes);
    }
}

// A fresh run refuses a folder that holds one; a resumed run loads its newest checkpoint (a run
// with none starts afresh). The reference log-probs come first, from the adapter the run starts
// with.
void Trainer::start_or_resume() {
    make_dirs(options_.output_dir);
    const std::optional<long> last = latest_checkpoint_step(options_.output_dir);
    if (last && !options_.resume) {
        throw InputError(fmt::format("{} already holds a run (checkpoint-{}); pass --resume to continue it, or "
                                     "choose another output folder",
                                     options_.output_dir, *last));
    }
    compute_reference();
    std::optional<TrainerState> state;
    if (last) {
        state = read_latest_checkpoint(options_.output_dir, model_->config(), adapter_, *optimizer_);
    }
    if (!state) {
        if (writes_) {
            write_file_atomic(options_.output_dir + "/paft_recipe.yaml", recipe_yaml(options_));
            truncate_file(options_.output_dir + "/metrics.jsonl", 0);
        }
        return;
    }
    if (state->fingerprint != fingerprint_) {
        throw InputError(fmt::format("{}: the data or configuration differ from the run being resumed (compare "
                                     "with {}/paft_recipe.yaml)",
                                     options_.output_dir, options_.output_dir));
    }
    start_step_        = state->global_step;
    loop_.num_tokens   = state->num_tokens;
    loop_.window_sums  = state->window_sums;
    loop_.window_steps = state->window_steps;
    if (writes_) {
        truncate_file(options_.output_dir + "/metrics.jsonl", state->log_bytes);
    }
}

StepMetrics Trainer::compute_gradients(long step) {
    const std::vector<size_t> units = step_units(step);
    return options_.method == Method::sft ? sft_step(units, step) : preference_step(units, step);
}

// SFT's L1 penalty on the adapter's delta s·B·A: its gradient added, its value in the loss.
void Trainer::penalize(StepMetrics & m) {
    if (options_.method == Method::sft && options_.l1_lambda > 0) {
        DeltaStats d = l1_penalty(backend_, adapter_, options_.l1_lambda, options_.sparsity_threshold,
                                  adapter_.grads().data());
        m.values["l1_penalty"] = options_.l1_lambda * d.l1;
        m.values["loss"] += options_.l1_lambda * d.l1;
    }
}

void Trainer::update(double lr) { optimizer_->step(adapter_.params().data(), adapter_.grads().data(), lr); }

// SFT logs the sparsity of the adapter as updated (as saved).
void Trainer::add_log_fields(nlohmann::ordered_json & line) {
    if (options_.method == Method::sft) {
        line["sparsity"] = l1_penalty(backend_, adapter_, 0.0, options_.sparsity_threshold, nullptr).sparsity();
    }
}

TrainSummary Trainer::run() {
    std::optional<RunOutputGuard> guard;  // after a failure: the last checkpoint, or nothing
    std::optional<OutputLock>     lock;   // the folder is this run's while it writes (rank 0 writes)
    if (writes_ && !options_.resume && !latest_checkpoint_step(options_.output_dir)) {
        // Files but no run: another adapter, or anything else, is not written over unasked.
        OutputLock::refuse_existing(options_.output_dir, "output_dir (--out)",
                                    "pass --resume to train into it all the same");
    }
    if (writes_) {
        guard.emplace(options_.output_dir,
                      std::vector<std::string>{"metrics.jsonl", "paft_recipe.yaml", "reference_logps.json"});
        lock.emplace(options_.output_dir);
    }
    guard_ = guard ? &*guard : nullptr;
    start_or_resume();
    if (guard && start_step_ > 0) {
        guard->checkpointed(metrics_bytes(options_.output_dir));
    }
    TrainSummary summary;
    summary.resumed = start_step_ > 0;
    if (start_step_ >= total_steps_) {  // a finished run: nothing left but its outputs
        if (writes_) {
            adapter_.save(options_.output_dir, options_.model);
        }
        summary.global_step = total_steps_;
        if (guard) {
            guard->commit();
        }
        return summary;
    }
    StepLoopConfig loop;
    loop.label           = label_;
    loop.output_dir      = options_.output_dir;
    loop.schedule        = schedule_;
    loop.total_steps     = total_steps_;
    loop.steps_per_epoch = steps_per_epoch_;
    loop.logging_steps   = options_.logging_steps;
    loop.eval_steps      = options_.eval_steps;
    loop.save_steps      = options_.save_steps;
    loop.max_grad_norm   = options_.max_grad_norm;
    loop.plain_progress  = plain_progress_;
    loop.writes          = writes_;
    static_cast<StepLoopResult &>(summary) = run_step_loop(*this, loop, start_step_, loop_);
    if (options_.eval_steps == 0 || total_steps_ % options_.eval_steps != 0) {
        evaluate(total_steps_);
    }
    if (writes_) {
        adapter_.save(options_.output_dir, options_.model);
    }
    save_checkpoint(total_steps_);
    summary.global_step = total_steps_;
    if (guard) {
        guard->commit();
    }
    return summary;
}

}  // namespace paft
