// Data parallelism over the sequences of a batch, one worker per thread.
//
// On a few cores, splitting every product across threads leaves them waiting on each other at
// each of the hundreds of small operations of a step. Here each worker runs its own Transformer
// on a slice of the batch's rows with single-threaded kernels (BLAS and OpenMP loops called
// inside a parallel region run on the calling thread), and the gradients of the workers are
// summed in worker order, so results depend on the thread count but not on timing.
//
// Over the ranks of an MPI job (core/communicator.h) the workers are those of every rank, rank
// by rank (rank r's local worker i is worker r * L + i): every rank sees the whole batch, runs
// its own workers' rows, and receives the other ranks' log-probs and per-worker gradients, which
// it adds in worker order exactly as one process with the same number of workers does. So N ranks
// of L threads give the bits of one process of N * L threads.
#pragma once

#include "core/communicator.h"
#include "model/transformer.h"

#include <memory>
#include <vector>

namespace paft {

class ParallelTransformer {
public:
    // `workers` <= 0: one per backend thread (on each rank). `ranks`: the job's ranks, each
    // running this with the same batches (null: this process alone).
    ParallelTransformer(Backend & backend, std::shared_ptr<const Model> model, int workers = 0,
                        Communicator * ranks = nullptr);

    void set_training(bool training, uint64_t seed = 0, uint64_t step = 0);
    // As Transformer's, for every worker.
    void   set_recompute(bool recompute);
    bool   recompute() const { return workers_.front().transformer->recompute(); }
    size_t activation_bytes() const;  // summed over the workers

    // As Transformer's, over the whole batch; logp [B*T] in the batch's order.
    const std::vector<float> & forward(const Batch & batch, const LoraAdapter * adapter);
    void                       backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                                        GradBuffers grads);
    const std::vector<float> & forward_backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                                                GradBuffers grads);

    const Model & model() const { return *model_; }

private:
    struct Worker {
        std::unique_ptr<Transformer> transformer;
        Batch                        slice;
        std::vector<float>           lora_grads, full_grads;
        int                          first_row = 0, rows = 0;  // rows 0: no part of this batch
    };
    enum Mode { FORWARD, BACKWARD, FORWARD_BACKWARD };
    void run(Mode mode, const Batch & batch, const LoraAdapter * adapter, const float * dlogp, GradBuffers grads);
    void run_worker(Worker & w, Mode mode, const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                    GradBuffers grads, size_t lora_size, size_t full_size);
    int  split(const Batch & batch);  // fills the local workers' slices; returns how many workers (all ranks') are used
    // Sums the used workers' gradients into `grads` in worker order (several ranks: gathered first).
    void add_worker_grads(float * grads, size_t size, std::vector<float> Worker::*buffer);

    Backend &                    backend_;
    std::shared_ptr<const Model> model_;
    std::vector<Worker>          workers_;  // this rank's
    Communicator *               ranks_ = nullptr;  // null or one rank: this process alone
    int                          rank_ = 0, rank_count_ = 1;
    int                          used_ = 0;  // workers of every rank with rows of the batch
    std::vector<float>           gathered_;  // [ranks * local workers * size] gradients of every worker
    int                          B_ = 0, T_ = 0;  // the last forward's batch shape
    std::vector<float>           logp_;
};

}  // namespace paft
