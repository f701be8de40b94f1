#include "eval/model_lm.h"

#include "core/byte_buffer.h"
#include "core/error.h"
#include "core/utf8.h"
#include "io/json_snippet.h"
#include "eval/generate.h"
#include "eval/sampling.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace paft {
namespace {

// Python's str.isspace: Unicode White_Space plus the separators U+001C..U+001F.
bool python_isspace(char32_t cp) { return is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Byte length of the trailing whitespace of valid UTF-8 `s` (Python's len(s) - len(s.rstrip())).
size_t trailing_space_bytes(std::string_view s) {
    size_t i = 0, last_non_space_end = 0;
    while (i < s.size()) {
        const char32_t cp = next_code_point(s, i);
        if (!python_isspace(cp)) {
            last_non_space_end = i;
        }
    }
    return s.size() - last_non_space_end;
}

// One request as the model sees it: `input` = (context_enc + continuation_enc)[-(L+1):][:-1];
// the logits at input positions [first, input.size()) predict the continuation's tokens.
struct ScoredRequest {
    std::vector<int32_t> input;
    std::vector<int32_t> continuation;
    size_t               first = 0;
    size_t               index = 0;  // in the caller's list
    std::span<const int32_t> stem() const { return {input.data(), first}; }
};

size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) {
        n++;
    }
    return n;
}

// log p(target) under the softmax of `logits` [V] and whether target is the first argmax.
std::pair<double, bool> score_token(const float * logits, int V, int32_t target) {
    const int32_t best = argmax_token(logits, V);
    const double  max  = logits[best];
    double       sum = 0.0;
    for (int v = 0; v < V; v++) {
        sum += std::exp(static_cast<double>(logits[v]) - max);
    }
    return {static_cast<double>(logits[target]) - max - std::log(sum), best == target};
}

// The tokens of a run of requests sharing one stem, computed a group of caches at a time.
constexpr long kTokensPerForward = 1024;

// Requests [begin, end) of the depth-first order share `stem`; the trunk keeps the first `shared`
// tokens of the previous group's stem and computes the rest. cost: tokens the group computes.
struct StemGroup {
    size_t                   begin = 0, end = 0;
    std::span<const int32_t> stem;
    size_t                   shared = 0;
    long                     cost   = 0;
};

std::vector<StemGroup> plan_groups(const std::vector<ScoredRequest> & scored, const std::vector<size_t> & order) {
    std::vector<StemGroup>   groups;
    std::span<const int32_t> previous;
    for (size_t g0 = 0; g0 < order.size();) {
        StemGroup group;
        group.begin  = g0;
        group.stem   = scored[order[g0]].stem();
        group.shared = common_prefix(previous, group.stem);
        group.cost   = (long) (group.stem.size() - group.shared);
        size_t g1    = g0;
        while (g1 < order.size() && std::ranges::equal(scored[order[g1]].stem(), group.stem)) {
            group.cost += (long) (scored[order[g1]].input.size() - group.stem.size());
            g1++;
        }
        group.end = g1;
        previous  = group.stem;
        groups.push_back(group);
        g0 = g1;
    }
    return groups;
}

// A forward pass of the trunk, as far as its keys and values are still in the trunk: group
// `group` computed its stem's tokens [from, stem end); positions [from, until) remain.
struct TrunkPiece {
    size_t group = 0, from = 0, until = 0;
};

// The pieces the trunk holds when group `at` begins (one process's run up to there).
std::vector<TrunkPiece> trunk_before(const std::vector<StemGroup> & groups, size_t at) {
    std::vector<TrunkPiece> pieces;
    for (size_t g = 0; g < at; g++) {
        const size_t keep = groups[g].shared;
        while (!pieces.empty() && pieces.back().from >= keep) {
            pieces.pop_back();
        }
        if (!pieces.empty()) {
            pieces.back().until = std::min(pieces.back().until, keep);
        }
        if (keep < groups[g].stem.size()) {
            pieces.push_back({g, keep, groups[g].stem.size()});
        }
    }
    return pieces;
}

}  // namespace

ModelLanguageModel::ModelLanguageModel(Backend & backend, AdaptedModel model,
                                       const Tokenizer & tokenizer, ModelLmOptions options) :
    decoder_(backend, std::move(model)),
    tokenizer_(tokenizer),
    options_(std::move(options)),
    max_length_(options_.max_length > 0 ? options_.max_length : decoder_.model().config().max_position_embeddings) {
    if (max_length_ < 2) {
        throw InputError(fmt::format("max length {} is too small to score anything", max_length_));
    }
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> ModelLanguageModel::encode_pair(
    const LoglikelihoodRequest & request) const {
    const bool special = options_.add_special_tokens;
    if (request.continuation.empty()) {
        throw InputError("a log-likelihood request has an empty continuation");
    }
    if (request.context.empty()) {
        std::optional<int32_t> start = special && tokenizer_.bos_id() ? tokenizer_.bos_id() : tokenizer_.eos_id();
        if (!start) {
            throw InputError("an empty context is scored after the tokenizer's EOS (or BOS) token, and it has none");
        }
        // The continuation is encoded on its own (without special tokens when the context has them).
        return {{*start}, tokenizer_.encode(request.continuation, false)};
    }
    const size_t spaces       = trailing_space_bytes(request.context);
    const std::string context = request.context.substr(0, request.context.size() - spaces);
    std::vector<int32_t> whole_enc   = tokenizer_.encode(request.context + request.continuation, special);
    std::vector<int32_t> context_enc = tokenizer_.encode(context, special);
    const size_t n = std::min(context_enc.size(), whole_enc.size());
    return {std::move(context_enc), std::vector<int32_t>(whole_enc.begin() + n, whole_enc.end())};
}

std::vector<Loglikelihood> ModelLanguageModel::loglikelihood(const std::vector<LoglikelihoodRequest> & requests) {
    // Tokenize and truncate as the harness does.
    std::vector<ScoredRequest> scored(requests.size());
    for (size_t i = 0; i < requests.size(); i++) {
        auto [context, continuation] = encode_pair(requests[i]);
        if (continuation.empty()) {
            throw InputError(fmt::format("request {}: the continuation {} encodes to no tokens", i,
                                         json_snippet(nlohmann::json(requests[i].continuation))));
        }
        if (static_cast<int>(continuation.size()) > max_length_) {
            throw InputError(fmt::format("request {}: the continuation has {} tokens, more than the max length {}",
                                         i, continuation.size(), max_length_));
        }
        std::vector<int32_t> full = std::move(context);
        full.insert(full.end(), continuation.begin(), continuation.end());
        const size_t keep = std::min(full.size(), static_cast<size_t>(max_length_) + 1);
        ScoredRequest & r = scored[i];
        r.input.assign(full.end() - keep, full.end() - 1);
        r.first        = r.input.size() - continuation.size();
        r.continuation = std::move(continuation);
        r.index        = i;
        stats_.requests++;
        stats_.request_tokens += static_cast<long>(r.input.size());
    }
    // Depth-first order: requests sharing a stem are adjacent; so are stems sharing a prefix.
    std::vector<size_t> order(scored.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (scored[a].input != scored[b].input) {
            return scored[a].input < scored[b].input;
        }
        return a < b;
    });
    const std::vector<StemGroup> groups = plan_groups(scored, order);

    // This rank's groups [first, last): contiguous, balanced by the tokens they compute.
    const int N = options_.ranks ? options_.ranks->size() : 1, rank = options_.ranks ? options_.ranks->rank() : 0;
    long      total = 0;
    for (const StemGroup & g : groups) {
        total += g.cost;
    }
    size_t first = groups.size(), last = groups.size();
    long   before = 0;
    for (size_t g = 0; g < groups.size(); g++) {
        const int owner = total > 0 ? (int) std::min<long>(N - 1, before * N / total) : 0;
        if (owner == rank && first == groups.size()) {
            first = g;
        }
        if (owner > rank && last == groups.size()) {
            last = g;
        }
        before += groups[g].cost;
    }
    if (first > last) {
        first = last;
    }

    const ModelConfig &        config = decoder_.model().config();
    const int                  V      = decoder_.vocab_size();
    std::vector<Loglikelihood> results(requests.size());
    KvCache                    trunk(config, 0);
    std::vector<int32_t>       trunk_tokens;
    std::vector<KvCache>       branches;
    long                       done = 0, computed = 0;
    // Starting mid-way: the trunk as the groups before `first` left it, computed piece by piece as
    // they computed it (each forward pass over the same tokens and the same cache before it).
    if (first > 0 && first < last) {
        for (const TrunkPiece & piece : trunk_before(groups, first)) {
            const std::span<const int32_t> stem = groups[piece.group].stem;
            trunk.truncate((int) piece.from);
            const SequenceInput step{nullptr, &trunk, stem.subspan(piece.from), false};
            decoder_.forward({&step, 1});
            computed += (long) (stem.size() - piece.from);
            trunk.truncate((int) piece.until);
        }
        const std::span<const int32_t> left = groups[first - 1].stem;
        trunk_tokens.assign(left.begin(), left.end());
    }
    long own_requests = 0;
    for (size_t g = first; g < last; g++) {
        own_requests += (long) (groups[g].end - groups[g].begin);
    }

    for (size_t g = first; g < last; g++) {
        const StemGroup &              group = groups[g];
        const std::span<const int32_t> stem  = group.stem;
        // The trunk keeps what it shares with this stem and computes the rest.
        trunk.truncate(static_cast<int>(group.shared));
        trunk_tokens.resize(group.shared);
        if (group.shared < stem.size()) {
            const SequenceInput step{nullptr, &trunk, stem.subspan(group.shared), false};
            decoder_.forward({&step, 1});
            computed += static_cast<long>(stem.size() - group.shared);
            trunk_tokens.assign(stem.begin(), stem.end());
        }
        // The group's own tokens, a batch of branches per forward pass over the trunk.
        size_t b0 = group.begin;
        while (b0 < group.end) {
            size_t b1 = b0;
            long   tokens = 0;
            while (b1 < group.end && (b1 == b0 || tokens + (long) (scored[order[b1]].input.size() - stem.size()) <=
                                                       kTokensPerForward)) {
                tokens += static_cast<long>(scored[order[b1]].input.size() - stem.size());
                b1++;
            }
            while (branches.size() < b1 - b0) {
                branches.emplace_back(config, 0);
            }
            std::vector<SequenceInput> steps;
            for (size_t k = b0; k < b1; k++) {
                const ScoredRequest & r = scored[order[k]];
                KvCache &             own = branches[k - b0];
                own.truncate(0);
                steps.push_back({&trunk, &own, std::span<const int32_t>(r.input).subspan(stem.size()), true});
            }
            const float * logits = decoder_.forward(steps);
            computed += tokens;
            for (size_t k = b0; k < b1; k++) {
                const ScoredRequest & r = scored[order[k]];
                Loglikelihood &       out = results[r.index];
                out.is_greedy = true;
                for (size_t j = 0; j < r.continuation.size(); j++) {
                    auto [logp, greedy] = score_token(logits + j * V, V, r.continuation[j]);
                    out.logprob += logp;
                    out.is_greedy = out.is_greedy && greedy;
                }
                logits += (r.input.size() - stem.size()) * V;
            }
            b0 = b1;
        }
        done += static_cast<long>(group.end - group.begin);
        if (options_.on_progress) {
            options_.on_progress(done, own_requests);
        }
    }
    if (N > 1) {
        // Every rank's answers to every rank: (index, logprob, is_greedy) records.
        std::string mine;
        for (size_t g = first; g < last; g++) {
            for (size_t k = groups[g].begin; k < groups[g].end; k++) {
                const size_t i = scored[order[k]].index;
                append_value(mine, (uint64_t) i);
                append_value(mine, results[i].logprob);
                append_value(mine, (uint8_t) results[i].is_greedy);
            }
        }
        for (const std::string & theirs : options_.ranks->all_gather(mine)) {
            for (size_t at = 0; at < theirs.size();) {
                const auto i  = read_value<uint64_t>(theirs, at);
                const auto lp = read_value<double>(theirs, at);
                const auto gr = read_value<uint8_t>(theirs, at);
                results.at(i) = {lp, gr != 0};
            }
        }
        double sum = (double) computed;
        options_.ranks->sum(&sum, 1);
        computed = (long) sum;
    }
    stats_.computed_tokens += computed;
    return results;
}

std::vector<std::string> ModelLanguageModel::greedy_until(const std::vector<GreedyRequest> & requests) {
    // Requests with the same stop strings and limit are generated together.
    std::vector<std::string>         texts(requests.size());
    std::vector<bool>                handled(requests.size(), false);
    std::vector<std::vector<size_t>> runs;
    for (size_t i = 0; i < requests.size(); i++) {
        if (!handled[i]) {
            std::vector<size_t> & members = runs.emplace_back();
            for (size_t j = i; j < requests.size(); j++) {
                if (!handled[j] && requests[j].until == requests[i].until &&
                    requests[j].max_gen_toks == requests[i].max_gen_toks) {
                    members.push_back(j);
                    handled[j] = true;
                }
            }
        }
    }
    // Across ranks, generate_shared gives rank r members [n r / N, n (r + 1) / N) of each run.
    const int N = options_.ranks ? options_.ranks->size() : 1, rank = options_.ranks ? options_.ranks->rank() : 0;
    auto      share = [&](size_t n) {
        return std::pair<size_t, size_t>{n * (size_t) rank / (size_t) N, n * (size_t) (rank + 1) / (size_t) N};
    };
    long own_requests = 0, done = 0;
    for (const auto & members : runs) {
        own_requests += (long) (share(members.size()).second - share(members.size()).first);
    }
    for (const std::vector<size_t> & members : runs) {
        const size_t i = members[0];
        const int max_new = requests[i].max_gen_toks;
        if (max_new <= 0) {
            throw InputError(fmt::format("greedy request {}: max_gen_toks must be positive", i));
        }
        // The harness keeps the last (max_length - max_gen_toks) context tokens.
        const long keep = std::max<long>(1, static_cast<long>(max_length_) - max_new);
        std::vector<std::vector<int32_t>> prompts;
        for (size_t j : members) {
            std::vector<int32_t> ids = tokenizer_.encode(requests[j].context, options_.add_special_tokens);
            if (ids.empty()) {
                std::optional<int32_t> start = tokenizer_.bos_id() ? tokenizer_.bos_id() : tokenizer_.eos_id();
                if (!start) {
                    throw InputError(fmt::format("greedy request {}: empty context and no BOS/EOS token", j));
                }
                ids.push_back(*start);
            }
            if (static_cast<long>(ids.size()) > keep) {
                ids.erase(ids.begin(), ids.end() - keep);
            }
            prompts.push_back(std::move(ids));
        }
        GenerationOptions options;
        options.max_new_tokens = max_new;
        options.stop           = requests[i].until;
        // transformers' generate stops at the model's EOS; the tokenizer's counts too.
        options.eos_ids = options_.eos_ids;
        if (options.eos_ids.empty()) {
            if (auto eos = tokenizer_.eos_id()) {
                options.eos_ids.push_back(*eos);
            }
            if (const int eos = decoder_.model().config().eos_token_id; eos >= 0) {
                options.eos_ids.push_back(eos);
            }
        }
        const long base = done;
        std::vector<Generation> generations = generate_shared(
            decoder_, tokenizer_, prompts, options, std::max(1, options_.generation_batch), options_.ranks,
            [&](size_t, const Generation &) {
                done++;
                if (options_.on_progress) {
                    options_.on_progress(done, own_requests);
                }
            });
        for (size_t k = 0; k < members.size(); k++) {
            texts[members[k]] = std::move(generations[k].text);
        }
        done = base + static_cast<long>(share(members.size()).second - share(members.size()).first);
    }
    return texts;
}

}  // namespace paft
