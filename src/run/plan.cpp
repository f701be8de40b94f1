#include "run/plan.h"

#include "core/error.h"
#include "core/memory.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "run/experiment.h"
#include "train/pipeline.h"

#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

namespace paft {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

// A stage may use this share of the physical memory; the rest is the system's (Model::load
// refuses weights above the same share).
constexpr double kUsableShare = 0.95;

// The longest evaluation context the plan counts. The harness lets a request use the model's whole
// context (max_position_embeddings: 32768 for Mistral-7B), but counting that for every sequence of
// a batch would refuse any 7B evaluation; 2048 is the harness's default max length (models that
// state none), and the plan's notes give each further token's cost.
constexpr int kEvalContextTokens = 2048;
// model_lm.cpp's kTokensPerForward: the branches of one log-likelihood forward pass, in tokens.
constexpr long kEvalTokensPerForward = 1024;
// export.cpp's kBlockValues: the rows converted at a time (q and k: the whole tensor).
constexpr int64_t kExportBlockValues = 1 << 22;
// Training data: bytes of a JSON Lines file per token, to estimate the examples' token ids from the
// file's size (text and chat markup, or pre-tokenized ids, take about this much a token).
constexpr uint64_t kFileBytesPerToken = 4;

std::string lower(std::string s) {
    for (char & c : s) c = (char) std::tolower((unsigned char) c);
    return s;
}

std::string gb(uint64_t bytes) { return fmt::format("{:.2f}", (double) bytes / 1e9); }

std::string human(uint64_t bytes) {
    if (bytes >= 1'000'000'000) return fmt::format("{:.2f} GB", (double) bytes / 1e9);
    if (bytes >= 1'000'000) return fmt::format("{:.1f} MB", (double) bytes / 1e6);
    return fmt::format("{:.0f} kB", (double) bytes / 1e3);
}

// LoRA parameters as LoraAdapter lays them out: per layer and target, A [r, in] and B [out, r].
size_t lora_parameters(const ModelConfig & c, const LoraConfig & lora) {
    const int C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    const int in[TARGET_COUNT]  = {C, C, C, Q, C, C, F};
    const int out[TARGET_COUNT] = {Q, K, K, C, F, F, C};
    size_t    per_layer         = 0;
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (lora.targets[t]) per_layer += (size_t) lora.r * (in[t] + out[t]);
    }
    return per_layer * c.num_layers;
}

// The largest targeted matrix, in values (the merge's largest changed tensor).
size_t largest_target(const ModelConfig & c, const std::array<bool, TARGET_COUNT> & targets) {
    const size_t C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    const size_t numel[TARGET_COUNT] = {Q * C, K * C, K * C, C * Q, F * C, F * C, C * F};
    size_t       largest             = 0;
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (targets[t]) largest = std::max(largest, numel[t]);
    }
    return largest;
}

int target_count(const std::array<bool, TARGET_COUNT> & targets) {
    return (int) std::count(targets.begin(), targets.end(), true);
}

const char * weight_type_word(TorchDtype d) {
    return d == TorchDtype::F32 ? "f32" : d == TorchDtype::BF16 ? "bf16" : d == TorchDtype::F16 ? "f16" : "auto";
}

// How Model::load keeps matrices stored as `stored` with `options`, in words.
std::string weight_form(DType stored, const LoadOptions & o) {
    const std::string as_stored = lower(dtype_name(stored));
    const std::string double_quant = o.double_quant ? " (double-quantized)" : "";
    switch (o.quantization) {
    case Quantization::NF4: return "nf4" + double_quant + ", quantized at load";
    case Quantization::FP4: return "fp4" + double_quant + ", quantized at load";
    case Quantization::Int8: return "q8_0, quantized at load";
    case Quantization::None: break;
    }
    if (o.torch_dtype != TorchDtype::Auto && weight_type_word(o.torch_dtype) != as_stored) {
        return std::string(weight_type_word(o.torch_dtype)) + ", converted at load";
    }
    return as_stored + ", mapped in place";
}

bool file_exists(const std::string & path) {
    std::error_code ec;
    return !path.empty() && fs::is_regular_file(path, ec);
}

// Plans the stages of one recipe (the order and names of experiment.cpp's run()).
class Planner {
public:
    Planner(const RunRecipe & r, const BaseModelFacts & base, const MachineFacts & machine) :
        r_(r), base_(base), machine_(machine), L_(r), c_(base.config) {}

    std::vector<StagePlan> stages() {
        std::vector<StagePlan> out;
        if (r_.synth) {
            out.push_back(synth());
        }
        TrainOptions sft = r_.train.sft, sparse = r_.train.sft, pref = r_.train.preference;
        sft.l1_lambda = 0;
        out.push_back(train("train/sft", sft));
        out.push_back(train("train/sft-sparse", sparse));
        out.push_back(train("train/" + L_.pref, pref));
        for (const char * variant : {"paft", "parallel"}) {
            for (const MergeOptions & m : r_.merges) {
                out.push_back(merge(variant, m));
            }
        }
        out.push_back(sequential("sft"));
        out.push_back(sequential("sft-sparse"));
        for (const ComparisonRow & row : comparison_rows(r_)) {
            out.push_back(evaluate(row));
        }
        for (const ComparisonRow & row : export_rows(r_)) {
            for (ExportType type : r_.exports.types) out.push_back(export_file(row, type));
        }
        return out;
    }

private:
    MemoryPart program() const {
        return {"program", machine_.program_bytes,
                "the process itself: its resident peak when planned (once work starts, the BLAS and thread "
                "buffers and the allocator's free memory add some tens of MB)"};
    }

    // A folder of the run as the table shows it: relative to the output folder.
    std::string shown(const std::string & path) const {
        return path.rfind(L_.out + "/", 0) == 0 ? path.substr(L_.out.size() + 1) : path;
    }

    int train_workers() const { return r_.train.threads > 0 ? r_.train.threads : machine_.threads; }
    int merge_workers() const { return r_.train.threads > 0 ? r_.train.threads : machine_.cores; }

    StagePlan synth() const {
        StagePlan s{"synth", "no model: writes the synthetic world (world/)", {program()}};
        s.parts.push_back({"world", 0, "the synthetic world's texts and its tokenizer's training are not counted"});
        return s;
    }

    // The examples' token ids, estimated from the files' sizes.
    MemoryPart data(const TrainOptions & o) const {
        // SftExample: input_ids and labels, int32 each; packing copies them into rows with
        // position ids. PreferenceExample: prompt, chosen and rejected ids, each token once.
        const uint64_t per_token = o.method == Method::sft ? (o.packing ? 8 + 12 : 8) : 4;
        MemoryPart     part{"data", 0, ""};
        for (const std::string & file : {o.train_data, o.eval_data}) {
            if (file.empty()) continue;
            if (file_exists(file)) {
                part.bytes += fs::file_size(file) / kFileBytesPerToken * per_token;
            } else {
                part.note = fmt::format("{} does not exist yet{}: its examples are not counted", file,
                                        r_.synth ? " (the synth stage writes it)" : "");
            }
        }
        if (part.note.empty()) {
            part.note = fmt::format("the examples' token ids, {} bytes a token, at about {} bytes of data file a token",
                                    per_token, kFileBytesPerToken);
        }
        return part;
    }

    // The parts of one Trainer run of `o` over a model whose weights take `weights` bytes.
    void add_training(StagePlan & s, const TrainOptions & o, size_t weights) const {
        const bool   pairs  = o.method != Method::sft;
        const size_t params = lora_parameters(c_, o.lora);
        // Micro-batches: B examples (pairs: chosen and rejected, 2B sequences) of at most max_length
        // tokens; evaluation batches too when there is eval data.
        int B = o.per_device_train_batch_size;
        if (!o.eval_data.empty()) B = std::max(B, o.per_device_eval_batch_size);
        if (pairs) B *= 2;
        const int T       = o.data.max_length > 0 ? o.data.max_length : c_.max_position_embeddings;
        const int used    = std::min(train_workers(), B);  // ParallelTransformer's split of the rows
        const bool dropout = o.lora.dropout > 0.0f;
        size_t activations = 0, scratch = 0;
        for (int w = 0; w < used; w++) {
            const int rows = B / used + (w < B % used ? 1 : 0);
            activations +=
                Transformer::planned_activation_bytes(c_, rows, T, &o.lora, o.gradient_checkpointing, dropout);
            scratch += Transformer::planned_scratch_bytes(c_, rows, T, &o.lora, dropout);
        }
        const int moments = o.optimizer.name == "adamw" ? 2 : o.optimizer.momentum != 0.0 ? 1 : 0;
        s.parts.push_back({"weights", weights, ""});
        s.parts.push_back({"adapter+optimizer", (2 + moments) * 4 * params, ""});
        if (used > 1) {
            s.parts.push_back({"worker gradients", (size_t) used * 4 * params, ""});
        }
        if (moments > 0) {
            s.parts.push_back({"checkpoint", (size_t) moments * 4 * params, ""});
        }
        s.parts.push_back({"activations", activations,
                           o.packing ? "" : "counted for max_length tokens: a batch only as long as its longest "
                                            "example holds less"});
        s.parts.push_back({"scratch", scratch, ""});
        s.parts.push_back(data(o));
        s.loads += fmt::format("; LoRA r {} on {} modules ({:.2f}M parameters), {}; {} x {} tokens{}{}; {} worker{}",
                               o.lora.r, target_count(o.lora.targets), params / 1e6, o.optimizer.name, B, T,
                               pairs ? " (pairs: chosen + rejected)" : "",
                               o.gradient_checkpointing ? ", gradient checkpointing" : "", used, used > 1 ? "s" : "");
    }

    StagePlan train(const std::string & stage, const TrainOptions & o) const {
        const LoadOptions load = r_.train.sft.load_options();  // the base is loaded once, as SFT's keys say
        StagePlan         s{stage, base_.dir + " " + weight_form(base_.stored, load), {program()}};
        add_training(s, o, base_.weight_bytes(load));
        return s;
    }

    // The SFT adapter folded into one copy of the base (each edited matrix replaces its mapped
    // pages), saved, then preference training from it.
    StagePlan sequential(const std::string & sft_name) const {
        const LoadOptions load = r_.train.sft.load_options();
        TrainOptions      o    = r_.train.preference;
        StagePlan         s{"sequential/" + sft_name + "-" + L_.pref,
                    base_.dir + " " + weight_form(base_.stored, load) + ", " + shown(L_.adapter(sft_name)) +
                        " folded in (one copy)",
                    {program()}};
        add_training(s, o, base_.weight_bytes(load));
        return s;
    }

    StagePlan merge(const std::string & variant, const MergeOptions & m) const {
        const std::string sft = variant == "paft" ? "sft-sparse" : "sft";
        const TrainOptions & so = r_.train.sft, & po = r_.train.preference;
        std::array<bool, TARGET_COUNT> targets{};
        for (int t = 0; t < TARGET_COUNT; t++) targets[t] = so.lora.targets[t] || po.lora.targets[t];
        // The merge engine's workers each take a tensor at a time. A changed tensor's job holds the
        // base, per model its delta and a sparsified copy, the result and a work buffer, f32
        // (engine.cpp's job_bytes; PAFT's SLERP has one model, the base carrying the SFT adapter,
        // the others two), plus the base tensor's mapped pages while it is read; the buffers stay
        // with the worker. An unchanged tensor is copied from its mapped pages (the embedding and
        // the head are the largest).
        const size_t models  = m.method == "slerp" ? 1 : 2;
        const size_t stored  = dtype_size(base_.stored);
        const size_t changed = largest_target(c_, targets);
        const size_t job     = changed * sizeof(float) * (1 + 2 * models + 2) + changed * stored;
        const size_t copied  = (size_t) std::max(c_.vocab_size, c_.intermediate_size) * c_.hidden_size * stored;
        const size_t jobs    = (size_t) c_.num_layers * target_count(targets) + 2;
        const size_t workers = std::min<size_t>(merge_workers(), jobs);
        StagePlan    s{"merge/" + variant + "-" + m.method,
                    fmt::format("streams {} + {}, {}; {} worker{}", base_.dir, shown(L_.adapter(sft)),
                                shown(L_.adapter(L_.pref)), workers, workers > 1 ? "s" : ""),
                    {program()}};
        s.parts.push_back({"adapters", 8 * (lora_parameters(c_, so.lora) + lora_parameters(c_, po.lora)), ""});
        s.parts.push_back({"merge buffers", workers * std::max(job, copied),
                           "each worker keeps the buffers of the largest tensor it merged"});
        return s;
    }

    // The adapter folder's LoRA configuration: SFT's or the preference branch's.
    const LoraConfig & lora_of(const std::string & adapter_dir) const {
        return adapter_dir == L_.adapter(L_.pref) ? r_.train.preference.lora : r_.train.sft.lora;
    }

    // A row's model: its weights, how they are kept, and the largest matrix's stored bytes.
    struct RowModel {
        size_t      weights = 0;
        std::string form;
        DType       stored;
    };
    RowModel row_model(const ComparisonRow & row) const {
        if (row.model == L_.base) {  // as the trainings loaded it
            const LoadOptions load = r_.train.sft.load_options();
            return {base_.weight_bytes(load), weight_form(base_.stored, load), base_.stored};
        }
        if (row.id.rfind("sequential-", 0) == 0) {  // save_model_dir's dtype, read as stored
            const DType saved = saved_model_dtype(c_);
            return {planned_weight_bytes(c_, saved, {}), weight_form(saved, {}), saved};
        }
        // merged: each tensor in the base's stored dtype (the run's merges set no out_dtype)
        return {base_.weight_bytes({}), weight_form(base_.stored, {}), base_.stored};
    }

    StagePlan evaluate(const ComparisonRow & row) const {
        const RunEvaluation & e     = r_.evaluation;
        const RowModel        model = row_model(row);
        const int             P     = std::min(c_.max_position_embeddings, kEvalContextTokens);
        const bool            judge = !e.winrate.empty();
        StagePlan             s{"eval/" + row.id, shown(row.model) + " " + model.form, {program()}};
        size_t                adapters = 0;
        for (const std::string & a : row.adapters) {
            adapters += 8 * lora_parameters(c_, lora_of(a));
            s.loads += " + " + shown(a);
        }
        s.loads += fmt::format("; contexts up to {} tokens, {} generations at a time", P, e.batch);
        // KV caches: the log-likelihood trunk (a context) and its branches (kEvalTokensPerForward
        // tokens), or a batch of generations (prompt and new tokens); one after the other.
        const size_t per_position = (size_t) c_.num_layers * c_.kv_dim() * 2 * sizeof(float);
        const size_t positions    = std::max<size_t>(P + kEvalTokensPerForward, (size_t) e.batch * P);
        // The Decoder's buffers grow to its largest forward pass: a trunk, a batch of branches, or the
        // prompts of a batch of generations at once; per token x, h [C], rstd, qkv [S], attn [Hq*D],
        // gate/up [2F], act [F], cos/sin [D], ids and positions.
        const size_t tokens    = std::max<size_t>({(size_t) P, (size_t) kEvalTokensPerForward, (size_t) e.batch * P});
        const size_t per_token = (2 * c_.hidden_size + 1 + c_.qkv_dim() + c_.q_dim() + 3 * c_.intermediate_size +
                                  c_.head_dim + 2) * sizeof(float);
        // Logits [rows, V]: a batch of branches' every token, or one row per generation.
        const size_t logit_rows = std::max<size_t>(kEvalTokensPerForward, e.batch);
        s.parts.push_back({"weights", model.weights, ""});
        if (adapters > 0) {
            s.parts.push_back({"adapters", adapters, ""});
        }
        s.parts.push_back({"KV cache", positions * per_position,
                           fmt::format("f32 keys and values; contexts of at most {} tokens assumed (the model "
                                       "allows {}); each further token of context adds {} a sequence",
                                       P, c_.max_position_embeddings, human(per_position))});
        // With judge cases a second Decoder generates the answers while the tasks' one is kept.
        s.parts.push_back({"decoder scratch", tokens * per_token * (judge ? 2 : 1), ""});
        s.parts.push_back({"logits", (logit_rows + (judge ? e.batch : 0)) * c_.vocab_size * sizeof(float), ""});
        s.parts.push_back({"tasks", 0, "the tasks' documents and requests are not counted"});
        return s;
    }

    StagePlan export_file(const ComparisonRow & row, ExportType type) const {
        const RowModel model = row_model(row);
        StagePlan      s{"export/" + row.id + "-" + export_type_name(type),
                    "streams " + shown(row.model) + (row.adapters.empty() ? "" : " + " + shown(row.adapters.front())) +
                        " a block of rows at a time",
                    {program()}};
        size_t adapters = 0;
        for (const std::string & a : row.adapters) adapters += 8 * lora_parameters(c_, lora_of(a));
        if (adapters > 0) s.parts.push_back({"adapters", adapters, ""});
        // Rows as f32 and quantized (q and k whole, to reorder their rows), and the tensor's mapped
        // pages until it is released: at most the largest matrix, the embedding or the head.
        const size_t block   = std::max<size_t>(kExportBlockValues, (size_t) c_.q_dim() * c_.hidden_size);
        const size_t largest = (size_t) std::max(c_.vocab_size, c_.intermediate_size) * c_.hidden_size *
                               dtype_size(model.stored);
        s.parts.push_back({"export buffers", 2 * block * sizeof(float) + largest, ""});
        return s;
    }

    const RunRecipe &      r_;
    const BaseModelFacts & base_;
    const MachineFacts &   machine_;
    RunLayout              L_;
    const ModelConfig &    c_;
};

std::vector<StagePlan> stages_of(const RunRecipe & recipe, const BaseModelFacts & base, const MachineFacts & machine) {
    return Planner(recipe, base, machine).stages();
}

// Recipe changes that lower a stage's peak, each tried alone and then all together; only those
// that help are returned, each with what the failing stages then need.
std::vector<std::string> remedies(const RunPlan & plan, const RunRecipe & recipe, const BaseModelFacts & base) {
    std::set<std::string> failing;
    uint64_t              worst = 0;
    for (const StagePlan & s : plan.stages) {
        if (!plan.fits(s)) {
            failing.insert(s.stage);
            worst = std::max(worst, s.peak_bytes());
        }
    }
    using Change = std::function<void(RunRecipe &)>;
    std::vector<std::pair<std::string, Change>> changes;
    const TrainOptions & so = recipe.train.sft, & po = recipe.train.preference;
    const Quantization   q  = so.load_options().quantization;
    if (q != Quantization::NF4 && q != Quantization::FP4) {
        changes.push_back({"load_in_4bit: true", [](RunRecipe & r) {
                               for (TrainOptions * o : {&r.train.sft, &r.train.preference}) {
                                   o->load_in_4bit = true;
                                   o->load_in_8bit = false;
                               }
                           }});
    }
    if (!so.gradient_checkpointing || !po.gradient_checkpointing) {
        changes.push_back({"gradient_checkpointing: true", [](RunRecipe & r) {
                               r.train.sft.gradient_checkpointing = r.train.preference.gradient_checkpointing = true;
                           }});
    }
    if (so.per_device_train_batch_size > 1 || po.per_device_train_batch_size > 1) {
        changes.push_back({"per_device_train_batch_size: 1 (and gradient_accumulation_steps up by as much, to keep "
                           "the batch)",
                           [](RunRecipe & r) {
                               for (TrainOptions * o : {&r.train.sft, &r.train.preference}) {
                                   o->gradient_accumulation_steps *= o->per_device_train_batch_size;
                                   o->per_device_train_batch_size = o->per_device_eval_batch_size = 1;
                               }
                           }});
    }
    if (recipe.evaluation.batch > 1) {
        changes.push_back({"evaluation: batch: 1", [](RunRecipe & r) { r.evaluation.batch = 1; }});
    }
    if (recipe.train.threads != 1) {
        changes.push_back(
            {"threads: 1 (fewer merge and training workers)", [](RunRecipe & r) { r.train.threads = 1; }});
    }
    if (changes.size() > 1) {
        std::vector<Change> all;
        for (const auto & [name, change] : changes) all.push_back(change);
        changes.push_back({"all of these", [all](RunRecipe & r) {
                               for (const Change & change : all) change(r);
                           }});
    }
    std::vector<std::string> out;
    for (const auto & [name, change] : changes) {
        RunRecipe changed = recipe;
        change(changed);
        RunPlan after{plan.recipe, plan.machine, stages_of(changed, base, plan.machine), {}};
        uint64_t most = 0;
        for (const StagePlan & s : after.stages) {
            if (failing.count(s.stage)) most = std::max(most, s.peak_bytes());
        }
        if (most >= worst) continue;
        out.push_back(fmt::format("{}: those stages then need at most {} GB{}", name, gb(most),
                                  after.fits() ? ", and every stage fits" : ", still too much"));
    }
    return out;
}

}  // namespace

uint64_t StagePlan::peak_bytes() const {
    uint64_t sum = 0;
    for (const MemoryPart & p : parts) sum += p.bytes;
    return sum;
}

BaseModelFacts BaseModelFacts::read(const std::string & dir) {
    if (!file_exists(dir + "/config.json")) {
        throw InputError(fmt::format("{}: no config.json: paft run plans every stage from the base model's config.json "
                                     "and safetensors headers (model_name_or_path)",
                                     dir));
    }
    BaseModelFacts b;
    b.dir    = dir;
    b.config = load_model_config(dir);
    b.store  = std::make_shared<const TensorStore>(TensorStore::open_dir(dir));
    const std::string probe = "model.layers.0.self_attn.q_proj.weight";
    b.stored = b.store->has(probe) ? b.store->info(probe).dtype : DType::F32;
    return b;
}

BaseModelFacts BaseModelFacts::from_config(std::string dir, ModelConfig config, DType stored) {
    BaseModelFacts b;
    b.dir    = std::move(dir);
    b.config = std::move(config);
    b.stored = stored;
    return b;
}

size_t BaseModelFacts::weight_bytes(const LoadOptions & options) const {
    return store ? planned_weight_bytes(config, *store, options) : planned_weight_bytes(config, stored, options);
}

MachineFacts MachineFacts::this_machine() {
    MachineFacts m;
    m.memory_bytes  = (uint64_t) sysconf(_SC_PHYS_PAGES) * (uint64_t) sysconf(_SC_PAGESIZE);
    m.threads       = std::max(1, omp_get_max_threads());
    m.cores         = std::max(1, (int) std::thread::hardware_concurrency());
    m.program_bytes = peak_resident_bytes();
    return m;
}

uint64_t MachineFacts::usable_bytes() const {
    return (uint64_t) (kUsableShare * (double) memory_bytes);
}

bool RunPlan::fits() const {
    return std::all_of(stages.begin(), stages.end(), [&](const StagePlan & s) { return fits(s); });
}

std::string RunPlan::table() const {
    std::string out = fmt::format("Memory plan of {}: this machine has {} GB of physical memory; a stage may use {} GB "
                                  "(95%); {} threads, {} cores\n\n",
                                  recipe, gb(machine.memory_bytes), gb(machine.usable_bytes()), machine.threads,
                                  machine.cores);
    out += "| stage | loads | peak memory GB | fits? | largest parts |\n|---|---|---:|---|---|\n";
    std::vector<std::string> notes;
    for (const StagePlan & s : stages) {
        std::vector<MemoryPart> parts = s.parts;
        std::stable_sort(parts.begin(), parts.end(),
                         [](const MemoryPart & a, const MemoryPart & b) { return a.bytes > b.bytes; });
        std::string list;
        for (size_t i = 0; i < parts.size() && i < 4; i++) {
            if (parts[i].bytes > 0) list += (list.empty() ? "" : ", ") + parts[i].name + " " + human(parts[i].bytes);
        }
        out += fmt::format("| {} | {} | {} | {} | {} |\n", s.stage, s.loads, gb(s.peak_bytes()), fits(s) ? "yes" : "NO",
                           list);
        for (const MemoryPart & p : s.parts) {
            const std::string note = p.name + ": " + p.note;
            if (!p.note.empty() && std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
        }
    }
    if (!notes.empty()) {
        out += "\nNotes:\n";
        for (const std::string & n : notes) out += "- " + n + "\n";
    }
    return out;
}

ordered_json RunPlan::json() const {
    ordered_json j = {{"recipe", recipe},
                      {"memory_bytes", machine.memory_bytes},
                      {"usable_bytes", machine.usable_bytes()},
                      {"threads", machine.threads},
                      {"fits", fits()},
                      {"stages", ordered_json::array()},
                      {"remedies", remedies}};
    for (const StagePlan & s : stages) {
        ordered_json parts = ordered_json::array();
        for (const MemoryPart & p : s.parts) parts.push_back({{"name", p.name}, {"bytes", p.bytes}, {"note", p.note}});
        j["stages"].push_back({{"stage", s.stage},
                               {"loads", s.loads},
                               {"peak_bytes", s.peak_bytes()},
                               {"fits", fits(s)},
                               {"parts", parts}});
    }
    return j;
}

std::string RunPlan::refusal() const {
    std::vector<const StagePlan *> failing;
    for (const StagePlan & s : stages) {
        if (!fits(s)) failing.push_back(&s);
    }
    if (failing.empty()) return "";
    std::string names;
    for (const StagePlan * s : failing) {
        names += fmt::format("{}{} ({} GB)", names.empty() ? "" : ", ", s->stage, gb(s->peak_bytes()));
    }
    auto by_peak = [](const StagePlan * a, const StagePlan * b) { return a->peak_bytes() < b->peak_bytes(); };
    const StagePlan * largest = *std::max_element(failing.begin(), failing.end(), by_peak);
    std::string parts;
    for (const MemoryPart & p : largest->parts) {
        if (p.bytes > 0) parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", p.name, human(p.bytes));
    }
    std::string out = fmt::format("{}: {} of {} stages cannot fit in this machine's memory ({} GB; a stage may use "
                                  "{} GB): {}. The largest, {}: {}.",
                                  recipe, failing.size(), stages.size(), gb(machine.memory_bytes),
                                  gb(machine.usable_bytes()), names, largest->stage, parts);
    if (!remedies.empty()) {
        out += " What would help:";
        for (const std::string & r : remedies) out += "\n  " + r;
    } else {
        out += " No change of batch, checkpointing, quantization or threads makes them fit: a machine with more "
               "memory, or a smaller model";
    }
    out += fmt::format("\n(paft run {} --plan prints every stage's parts)", recipe);
    return out;
}

RunPlan plan_run(const RunRecipe & recipe, const BaseModelFacts & base, const MachineFacts & machine) {
    RunPlan plan{recipe.path, machine, stages_of(recipe, base, machine), {}};
    if (!plan.fits()) {
        plan.remedies = remedies(plan, recipe, base);
    }
    return plan;
}

RunPlan plan_run(const RunRecipe & recipe) {
    return plan_run(recipe, BaseModelFacts::read(recipe.train.sft.model), MachineFacts::this_machine());
}

std::vector<StagePlan> plan_stages(const RunRecipe & recipe) {
    return plan_run(recipe).stages;
}

void check_plan_fits(const RunPlan & plan) {
    if (!plan.fits()) {
        throw RuntimeFailure(plan.refusal());
    }
}

}  // namespace paft
