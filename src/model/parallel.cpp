#include "model/parallel.h"

#include "core/error.h"

#include <omp.h>

#include <algorithm>
#include <exception>

namespace paft {
namespace {

// Rows [first, first + count) of `batch` into `slice`, whose buffers are reused from step to step.
void slice_rows(const Batch & batch, int first, int count, Batch & slice) {
    const size_t begin = (size_t) first * batch.T, end = begin + (size_t) count * batch.T;
    auto         cut   = [&](const std::vector<int32_t> & v, std::vector<int32_t> & out) {
        if (v.empty()) {
            out.clear();
        } else {
            out.assign(v.begin() + begin, v.begin() + end);
        }
    };
    slice.B = count;
    slice.T = batch.T;
    cut(batch.input_ids, slice.input_ids);
    cut(batch.attention_mask, slice.attention_mask);
    cut(batch.position_ids, slice.position_ids);
    cut(batch.targets, slice.targets);
    cut(batch.doc_start, slice.doc_start);
}

void add_into(float * dst, const std::vector<float> & src) {
    for (size_t i = 0; i < src.size(); i++) {
        dst[i] += src[i];
    }
}

}  // namespace

ParallelTransformer::ParallelTransformer(Backend & backend, std::shared_ptr<const Model> model, int workers,
                                         Communicator * ranks)
    : backend_(backend), model_(std::move(model)) {
    int n = workers > 0 ? workers : std::max(1, backend.threads());
    workers_.resize(n);
    for (Worker & w : workers_) {
        w.transformer = std::make_unique<Transformer>(backend_, model_);
    }
    if (ranks && ranks->size() > 1) {
        ranks_      = ranks;
        rank_       = ranks->rank();
        rank_count_ = ranks->size();
    }
}

void ParallelTransformer::set_training(bool training, uint64_t seed, uint64_t step) {
    // Every worker draws dropout masks from the same (seed, step) and its index among all ranks'
    // workers; rows differ, so masks do too.
    for (size_t i = 0; i < workers_.size(); i++) {
        const uint64_t worker = (uint64_t) rank_ * workers_.size() + i;
        workers_[i].transformer->set_training(training, seed + 0x9E3779B9ull * worker, step);
    }
}

void ParallelTransformer::set_recompute(bool recompute) {
    for (Worker & w : workers_) {
        w.transformer->set_recompute(recompute);
    }
}

size_t ParallelTransformer::activation_bytes() const {
    size_t bytes = 0;
    for (const Worker & w : workers_) {
        bytes += w.transformer->activation_bytes();
    }
    return bytes;
}

int ParallelTransformer::split(const Batch & batch) {
    const int local = (int) workers_.size();
    const int used  = std::min<int>(local * rank_count_, batch.B);
    for (int i = 0; i < local; i++) {
        workers_[i].rows = 0;
    }
    for (int g = 0, row = 0; g < used; g++) {
        const int rows = batch.B / used + (g < batch.B % used ? 1 : 0);
        if (g / local == rank_) {
            Worker & w   = workers_[g % local];
            w.first_row = row;
            w.rows      = rows;
            slice_rows(batch, row, rows, w.slice);
        }
        row += rows;
    }
    return used;
}

void ParallelTransformer::add_worker_grads(float * grads, size_t size, std::vector<float> Worker::*buffer) {
    if (!ranks_) {
        for (int i = 0; i < used_; i++) {  // in worker order: deterministic sums
            add_into(grads, workers_[i].*buffer);
        }
        return;
    }
    // Every rank's workers' buffers, rank by rank, then the same additions as one process makes.
    const size_t       local = workers_.size();
    std::vector<float> mine(local * size, 0.0f);
    for (size_t i = 0; i < local; i++) {
        if (workers_[i].rows > 0) {
            std::copy((workers_[i].*buffer).begin(), (workers_[i].*buffer).end(), mine.begin() + i * size);
        }
    }
    gathered_.resize((size_t) rank_count_ * local * size);
    ranks_->all_gather(mine.data(), mine.size(), gathered_.data());
    for (int g = 0; g < used_; g++) {
        const float * src = gathered_.data() + (size_t) g * size;
        for (size_t k = 0; k < size; k++) {
            grads[k] += src[k];
        }
    }
}

void ParallelTransformer::run_worker(Worker & w, Mode mode, const Batch & batch, const LoraAdapter * adapter,
                                     const float * dlogp, GradBuffers grads, size_t lora_size, size_t full_size) {
    const float * dl    = dlogp ? dlogp + (size_t) w.first_row * batch.T : nullptr;
    GradBuffers   local = grads;
    if (used_ > 1 && mode != FORWARD) {
        w.lora_grads.assign(lora_size, 0.0f);
        w.full_grads.assign(full_size, 0.0f);
        local = {lora_size ? w.lora_grads.data() : nullptr, full_size ? w.full_grads.data() : nullptr};
    }
    const std::vector<float> * logp = nullptr;
    if (mode == FORWARD) {
        logp = &w.transformer->forward(w.slice, adapter);
    } else if (mode == BACKWARD) {
        w.transformer->backward(w.slice, adapter, dl, local);
    } else {
        logp = &w.transformer->forward_backward(w.slice, adapter, dl, local);
    }
    if (logp) {
        std::copy(logp->begin(), logp->end(), logp_.begin() + (size_t) w.first_row * batch.T);
    }
}

void ParallelTransformer::run(Mode mode, const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                              GradBuffers grads) {
    if (mode != BACKWARD) {
        check_batch(batch, model_->config().vocab_size);  // before slicing it
        used_ = split(batch);
        B_    = batch.B;
        T_    = batch.T;
        logp_.assign((size_t) batch.B * batch.T, 0.0f);
    } else if (used_ == 0 || batch.B != B_ || batch.T != T_) {
        throw RuntimeFailure("ParallelTransformer::backward: call forward() on the same batch first");
    }
    const size_t lora_size = adapter && grads.lora ? adapter->params().size() : 0;
    const size_t full_size = grads.full ? model_->size() : 0;
    // This rank's workers with rows. With one worker the kernels themselves use every thread;
    // otherwise one thread per worker. An exception must not leave an OpenMP region: each
    // worker's is kept and rethrown after (on every rank, so that none waits for the others).
    std::vector<int> active;
    for (int i = 0; i < (int) workers_.size(); i++) {
        if (workers_[i].rows > 0) {
            active.push_back(i);
        }
    }
    const int                       n = (int) active.size();
    std::vector<std::exception_ptr> errors(n);
#pragma omp parallel for schedule(static, 1) num_threads(std::max(1, n)) if (n > 1)
    for (int a = 0; a < n; a++) {
        try {
            run_worker(workers_[active[a]], mode, batch, adapter, dlogp, grads, lora_size, full_size);
        } catch (...) {
            errors[a] = std::current_exception();
        }
    }
    const bool ok = std::none_of(errors.begin(), errors.end(), [](const std::exception_ptr & e) { return e; });
    if (ranks_ && !ranks_->all(ok) && ok) {
        throw RuntimeFailure("another rank of the job failed");
    }
    for (const std::exception_ptr & e : errors) {
        if (e) {
            std::rethrow_exception(e);
        }
    }
    if (ranks_ && mode != BACKWARD) {
        ranks_->sum(logp_.data(), logp_.size());  // each row's log-probs from the one rank that has them
    }
    if (mode == FORWARD) {
        return;
    }
    if (used_ > 1) {
        if (lora_size) {
            add_worker_grads(grads.lora, lora_size, &Worker::lora_grads);
        }
        if (full_size) {
            add_worker_grads(grads.full, full_size, &Worker::full_grads);
        }
    } else if (ranks_) {
        // One worker (rank 0's first) added into the gradients directly: its sums are everyone's.
        if (lora_size) {
            ranks_->broadcast(grads.lora, lora_size * sizeof(float), 0);
        }
        if (full_size) {
            ranks_->broadcast(grads.full, full_size * sizeof(float), 0);
        }
    }
}

const std::vector<float> & ParallelTransformer::forward(const Batch & batch, const LoraAdapter * adapter) {
    run(FORWARD, batch, adapter, nullptr, {});
    return logp_;
}

void ParallelTransformer::backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                                   GradBuffers grads) {
    run(BACKWARD, batch, adapter, dlogp, grads);
}

const std::vector<float> & ParallelTransformer::forward_backward(const Batch & batch, const LoraAdapter * adapter,
                                                                 const float * dlogp, GradBuffers grads) {
    run(FORWARD_BACKWARD, batch, adapter, dlogp, grads);
    return logp_;
}

}  // namespace paft
