#include "eval/evaluator.h"

#include "core/error.h"
#include "eval/pyrandom.h"
#include "eval/regex_filter.h"
#include "eval/task_yaml.h"
#include "eval/tasks.h"
#include "io/nonfinite.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

constexpr uint64_t kShuffleSeed = 42;  // the harness's rnd.seed(42)

// Reads a task's documents and checks its few-shot settings, so that a run refuses bad data or
// settings before the model computes anything.
Task load_task(const TaskSpec & spec, int k) {
    if (k < 0) {
        throw InputError(fmt::format("{}: the number of few-shot examples must be >= 0", spec.name));
    }
    Task t = spec.family == "yaml" ? load_custom_task(spec, k) : load_builtin_task(spec, k);
    if (t.zero_shot_only && k > 0) {
        throw InputError(fmt::format("{} is zero-shot only (the harness asserts num_fewshot == 0), {} asked", t.name, k));
    }
    const bool   excluding = t.shot_source == ShotSource::SampleExcluding || t.shot_source == ShotSource::FirstNExcluding;
    const size_t need      = static_cast<size_t>(k) + (excluding ? 1 : 0);
    if (k > 0 && need > t.shot_docs.size()) {
        throw InputError(fmt::format("{}: {} few-shot examples need {} documents but {} has {}", t.name, k, need,
                                     t.shot_split, t.shot_docs.size()));
    }
    return t;
}

// fewshot_context's choice of examples; `rnd` advances as the harness's does.
std::vector<const TaskDoc *> choose_shots(const Task & t, int k, PyRandom & rnd, const TaskDoc & doc) {
    std::vector<const TaskDoc *> shots;
    if (k == 0) {
        return shots;
    }
    const bool   excluding = t.shot_source == ShotSource::SampleExcluding || t.shot_source == ShotSource::FirstNExcluding;
    const size_t n         = t.shot_docs.size();
    const size_t need      = static_cast<size_t>(k) + (excluding ? 1 : 0);  // <= n: checked by load_task
    std::vector<size_t> picked;
    if (t.shot_source == ShotSource::FirstN || t.shot_source == ShotSource::FirstNExcluding) {
        for (size_t i = 0; i < need; i++) {
            picked.push_back(i);
        }
    } else {
        picked = rnd.sample(n, need);
    }
    for (size_t i : picked) {
        const TaskDoc & shot = t.shot_docs[i];
        // [x for x in fewshotex if x != doc][:num_fewshot]
        if (excluding && shot.identity == doc.identity) {
            continue;
        }
        if (shots.size() < static_cast<size_t>(k)) {
            shots.push_back(&shot);
        }
    }
    return shots;
}

// description + examples (text + target), each followed by the delimiter, then the document.
std::string fewshot_context(const Task & t, const TaskDoc & doc, const std::vector<const TaskDoc *> & shots) {
    std::string ctx = doc.description;
    for (const TaskDoc * shot : shots) {
        ctx += shot->text + shot->target + t.fewshot_delimiter;
    }
    return ctx + doc.text;
}

// Winogrande's append_context: ctx.split("\n\n") without its last piece (the document's own
// text), joined again with the partial context in its place. The split point is the last of a
// left-to-right, non-overlapping scan, as str.split finds them.
std::string append_context(const std::string & ctx, const std::string & partial) {
    size_t last = std::string::npos;
    for (size_t at = ctx.find("\n\n"); at != std::string::npos; at = ctx.find("\n\n", at + 2)) {
        last = at;
    }
    return last == std::string::npos ? partial : ctx.substr(0, last + 2) + partial;
}

size_t code_points(const std::string & s) {
    size_t n = 0;
    for (char c : s) {
        n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }
    return n;
}

// The requests of one document, appended.
void doc_requests(const Task & t, const TaskDoc & doc, const std::string & ctx, std::vector<LoglikelihoodRequest> & ll,
                  std::vector<GreedyRequest> & gen) {
    switch (t.scoring) {
    case Scoring::MultipleChoice:
        for (const std::string & c : doc.choices) {
            ll.push_back({ctx, t.choice_delimiter + c});
        }
        break;
    case Scoring::PartialContext:
        for (const std::string & partial : doc.choices) {
            ll.push_back({append_context(ctx, partial), doc.continuation});
        }
        break;
    case Scoring::TruthfulQaMc:
        for (const std::string & c : doc.choices) {
            ll.push_back({ctx, " " + c});
        }
        for (const std::string & c : doc.mc2_choices) {
            ll.push_back({ctx, " " + c});
        }
        break;
    case Scoring::Gsm8k:
    case Scoring::ExactMatch: gen.push_back({ctx, t.until, t.max_gen_toks}); break;
    }
}

size_t loglikelihoods_per_doc(const Task & t, const TaskDoc & doc) {
    switch (t.scoring) {
    case Scoring::MultipleChoice:
    case Scoring::PartialContext: return doc.choices.size();
    case Scoring::TruthfulQaMc: return doc.choices.size() + doc.mc2_choices.size();
    case Scoring::Gsm8k:
    case Scoring::ExactMatch: return 0;
    }
    return 0;
}

bool generates(const Task & t) { return t.scoring == Scoring::Gsm8k || t.scoring == Scoring::ExactMatch; }

std::vector<double> logprobs(const Loglikelihood * results, size_t n) {
    std::vector<double> out(n);
    for (size_t i = 0; i < n; i++) {
        out[i] = results[i].logprob;
    }
    return out;
}

// TruthfulQA's mc2: the normalised probability mass of the true answers. Shifting every
// log-likelihood by the largest leaves the ratio as it is and keeps exp from underflowing.
double truthfulqa_mc2(const std::vector<double> & lls, size_t true_count) {
    double top = lls[0];
    for (double ll : lls) {
        top = std::max(top, ll);
    }
    double p_true = 0, p_false = 0;
    for (size_t i = 0; i < lls.size(); i++) {
        (i < true_count ? p_true : p_false) += std::exp(lls[i] - top);
    }
    return p_true / (p_true + p_false);
}

// One document's metric values, in the order of the scoring's metrics.
std::vector<std::pair<std::string, double>> doc_metrics(const Task & t, const TaskDoc & doc, const Loglikelihood * results,
                                                        const std::string * generation, const RegexFilter * filter,
                                                        std::string & extracted) {
    auto flag = [](bool b) { return b ? 1.0 : 0.0; };
    switch (t.scoring) {
    case Scoring::MultipleChoice: {
        const std::vector<double> lls = logprobs(results, doc.choices.size());
        std::vector<double>       normalized(lls.size());
        for (size_t i = 0; i < lls.size(); i++) {
            normalized[i] = lls[i] / static_cast<double>(code_points(doc.choices[i]));
        }
        const size_t gold = static_cast<size_t>(doc.gold);
        return {{"acc", flag(argmax(lls) == gold)}, {"acc_norm", flag(argmax(normalized) == gold)}};
    }
    case Scoring::PartialContext:
        return {{"acc", flag(argmax(logprobs(results, doc.choices.size())) == static_cast<size_t>(doc.gold))}};
    case Scoring::TruthfulQaMc: {
        const std::vector<double> mc1 = logprobs(results, doc.choices.size());
        const std::vector<double> mc2 = logprobs(results + doc.choices.size(), doc.mc2_choices.size());
        return {{"mc1", flag(argmax(mc1) == 0)}, {"mc2", truthfulqa_mc2(mc2, doc.mc2_true)}};
    }
    case Scoring::Gsm8k:
        extracted = gsm8k_answer(*generation);
        return {{"acc", flag(extracted == doc.answer)}};
    case Scoring::ExactMatch:
        extracted = filter ? filter->apply(*generation) : *generation;
        return {{"exact_match", flag(extracted == doc.answer)}};
    }
    return {};
}

// Runs one loaded task (load_task) with k few-shot examples.
TaskResult run_task(LanguageModel & lm, const Task & t, int k, const EvalOptions & options, size_t index,
                    size_t count) {
    std::unique_ptr<RegexFilter> filter;
    if (!t.answer_regex.empty()) {
        filter = std::make_unique<RegexFilter>(t.answer_regex, t.answer_group_select, t.answer_fallback, t.name);
    }

    // The evaluation order: a seeded shuffle, then the first `limit`.
    std::vector<size_t> order(t.eval_docs.size());
    for (size_t i = 0; i < order.size(); i++) {
        order[i] = i;
    }
    PyRandom rnd(kShuffleSeed);
    rnd.shuffle(order);
    if (options.limit) {
        const size_t limit = static_cast<size_t>(std::max<int64_t>(*options.limit, 0));
        order.resize(std::min(limit, order.size()));
    }
    if (order.empty()) {
        throw InputError(fmt::format("{}: no documents to evaluate", t.name));
    }

    std::vector<LoglikelihoodRequest> ll_requests;
    std::vector<GreedyRequest>        gen_requests;
    for (size_t i : order) {
        const TaskDoc & doc = t.eval_docs[i];
        doc_requests(t, doc, fewshot_context(t, doc, choose_shots(t, k, rnd, doc)), ll_requests, gen_requests);
    }
    if (options.progress) {
        options.progress({index, count, t.name, order.size(), ll_requests.size() + gen_requests.size(), false});
    }
    std::vector<Loglikelihood> lls;
    std::vector<std::string>   generations;
    if (!ll_requests.empty()) {
        lls = lm.loglikelihood(ll_requests);
    }
    if (!gen_requests.empty()) {
        generations = lm.greedy_until(gen_requests);
    }
    if (lls.size() != ll_requests.size() || generations.size() != gen_requests.size()) {
        throw RuntimeFailure(fmt::format("{}: the model answered {} of {} log-likelihood and {} of {} generation requests",
                                         t.name, lls.size(), ll_requests.size(), generations.size(), gen_requests.size()));
    }
    // A NaN score would be written as null and counted as a wrong answer (io/nonfinite.h).
    size_t nonfinite = 0;
    for (const Loglikelihood & ll : lls) {
        nonfinite += std::isfinite(ll.logprob) ? 0 : 1;
    }
    check_finite_result(nonfinite, fmt::format("{}: log-probabilities of its requests", t.name));

    TaskResult result;
    result.name        = t.name;
    result.version     = t.version;
    result.num_fewshot = k;
    result.docs        = order.size();
    std::vector<std::vector<double>> values(t.metrics.size());
    size_t                           ll_at = 0, gen_at = 0;
    for (size_t pos = 0; pos < order.size(); pos++) {
        const TaskDoc & doc   = t.eval_docs[order[pos]];
        const size_t    n_ll  = loglikelihoods_per_doc(t, doc);
        const size_t    n_gen = generates(t) ? 1 : 0;
        std::string     extracted;
        auto metrics = doc_metrics(t, doc, lls.data() + ll_at, n_gen ? &generations[gen_at] : nullptr, filter.get(),
                                   extracted);
        for (size_t m = 0; m < t.metrics.size(); m++) {
            for (const auto & [name, v] : metrics) {
                if (name == t.metrics[m]) {
                    values[m].push_back(v);
                }
            }
        }
        if (options.log_samples) {
            DocSample s;
            s.doc_id = pos;
            s.where  = doc.where;
            s.loglikelihood_requests.assign(ll_requests.begin() + ll_at, ll_requests.begin() + ll_at + n_ll);
            s.loglikelihoods.assign(lls.begin() + ll_at, lls.begin() + ll_at + n_ll);
            s.greedy_requests.assign(gen_requests.begin() + gen_at, gen_requests.begin() + gen_at + n_gen);
            s.generations.assign(generations.begin() + gen_at, generations.begin() + gen_at + n_gen);
            s.extracted = extracted;
            s.metrics   = std::move(metrics);
            result.samples.push_back(std::move(s));
        }
        ll_at += n_ll;
        gen_at += n_gen;
    }
    for (size_t m = 0; m < t.metrics.size(); m++) {
        result.metrics.push_back(mean_with_stderr(t.metrics[m], values[m]));
    }
    if (options.progress) {
        options.progress({index, count, t.name, order.size(), ll_requests.size() + gen_requests.size(), true});
    }
    return result;
}

// The Open LLM Leaderboard's MMLU number: the unweighted mean over subjects. Its standard error
// treats the subjects' means as independent: sqrt(sum se_i^2) / k.
TaskResult mmlu_aggregate(const std::vector<const TaskResult *> & subjects) {
    TaskResult r;
    r.name        = "mmlu";
    r.version     = subjects[0]->version;
    r.num_fewshot = subjects[0]->num_fewshot;
    for (const MetricValue & first : subjects[0]->metrics) {
        double sum = 0, variance = 0;
        bool   have_stderr = true;
        for (const TaskResult * s : subjects) {
            for (const MetricValue & m : s->metrics) {
                if (m.name == first.name) {
                    sum += m.value;
                    variance += m.std_error ? *m.std_error * *m.std_error : 0;
                    have_stderr = have_stderr && m.std_error.has_value();
                }
            }
        }
        const double k = static_cast<double>(subjects.size());
        MetricValue  v{first.name, sum / k, std::nullopt};
        if (have_stderr) {
            v.std_error = std::sqrt(variance) / k;
        }
        r.metrics.push_back(v);
    }
    for (const TaskResult * s : subjects) {
        r.docs += s->docs;
    }
    return r;
}

// Every task read and checked (load_task), with its few-shot count.
std::vector<Task> load_tasks(const std::vector<TaskSpec> & tasks, std::optional<int> num_fewshot,
                             std::vector<int> & shots) {
    std::vector<Task> loaded;
    for (const TaskSpec & spec : tasks) {
        shots.push_back(num_fewshot.value_or(spec.default_num_fewshot));
        loaded.push_back(load_task(spec, shots.back()));
    }
    return loaded;
}

}  // namespace

void check_tasks(const std::vector<TaskSpec> & tasks, std::optional<int> num_fewshot) {
    std::vector<int> shots;
    load_tasks(tasks, num_fewshot, shots);
}

size_t argmax(const std::vector<double> & values) {
    size_t best = 0;
    for (size_t i = 0; i < values.size(); i++) {
        if (std::isnan(values[i])) {
            return i;
        }
        if (values[i] > values[best]) {
            best = i;
        }
    }
    return best;
}

MetricValue mean_with_stderr(const std::string & name, const std::vector<double> & values) {
    // metrics.mean and metrics.mean_stderr, summing left to right as Python's sum does.
    MetricValue  m{name, 0, std::nullopt};
    const double n = static_cast<double>(values.size());
    double       sum = 0;
    for (double v : values) {
        sum += v;
    }
    m.value = sum / n;
    if (values.size() > 1) {
        double squares = 0;
        for (double v : values) {
            squares += (v - m.value) * (v - m.value);
        }
        m.std_error = std::sqrt(squares / (n - 1)) / std::sqrt(n);
    }
    return m;
}

EvalReport evaluate(LanguageModel & lm, const std::vector<TaskSpec> & tasks, const EvalOptions & options) {
    EvalReport report;
    report.config["num_fewshot"] = options.num_fewshot ? ojson(*options.num_fewshot) : ojson(nullptr);
    report.config["limit"]       = options.limit ? ojson(*options.limit) : ojson(nullptr);
    report.config["harness"]     = "lm-evaluation-harness b281b09 semantics";
    ojson                            n_shot = ojson::object();
    std::vector<const TaskResult *>  subjects;
    // Every task is read and checked before the model computes anything.
    std::vector<int>        shots;
    const std::vector<Task> loaded = load_tasks(tasks, options.num_fewshot, shots);
    for (size_t i = 0; i < tasks.size(); i++) {
        std::optional<TaskResult> earlier = options.reuse ? options.reuse(loaded[i].name) : std::nullopt;
        if (earlier) {
            report.tasks.push_back(std::move(*earlier));
        } else {
            report.tasks.push_back(run_task(lm, loaded[i], shots[i], options, i, tasks.size()));
            if (options.on_task_done) {
                options.on_task_done(report.tasks.back());
            }
        }
        n_shot[report.tasks.back().name] = report.tasks.back().num_fewshot;
    }
    for (size_t i = 0; i < tasks.size(); i++) {
        if (tasks[i].family == "mmlu") {
            subjects.push_back(&report.tasks[i]);
        }
    }
    if (!subjects.empty()) {
        report.tasks.push_back(mmlu_aggregate(subjects));
    }
    report.config["n_shot"] = n_shot;
    return report;
}

}  // namespace paft
