// Randomly initialised models written without holding them: tensor by tensor, in layout order,
// straight into (sharded) safetensors, so a model of any size (a 7B model is 29 GB of f32) is
// written with two tensors in memory as f32 (one being drawn, one being written: ~0.5 GB for
// Mistral-7B, whose largest tensors are the 32000 x 4096 embedding and lm_head). The values are
// those of Model::random, bit for bit.
#pragma once

#include "core/random.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"

#include <cstdint>
#include <functional>
#include <string>

namespace paft {

// Fills `out` [entry.numel()] with the initial values of one tensor, as Hugging Face initialises
// these models: norms ("...layernorm.weight", "model.norm.weight") 1, biases (".bias") 0, every
// other weight 0.02 * normal() drawn from `rng`. Norms and biases draw nothing, so calling this
// for each entry of a ParamLayout in order, with one Random, gives Model::random's values.
void random_init_values(const ParamEntry & entry, Random & rng, float * out);

// The same values drawn by all cores (OpenMP; bit-identical, whatever the thread count).
// `values_drawn`: how many values `rng` has given since it was seeded (the sum of
// random_init_draws over the entries before this one).
void random_init_values_parallel(const ParamEntry & entry, Random & rng, uint64_t values_drawn, float * out);
// How many values random_init_values draws for `entry`: its numel for weights, 0 for norms and biases.
uint64_t random_init_draws(const ParamEntry & entry);

// Called after each tensor is on disk: bytes of tensor data written so far and in all.
using WriteProgress = std::function<void(uint64_t bytes_written, uint64_t bytes_total)>;

// Writes a randomly initialised model to folder `dir`: config.json (torch_dtype per `dtype`) and
// model.safetensors, or model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json
// when the data exceed max_shard_bytes: the same bytes as
// Model::random(config, seed)->save(dir, dtype, max_shard_bytes), without the f32 model in memory.
// `dtype` is F32, BF16 or F16.
//
// The files are written into .<name>.paft-partial next to `dir` (a leftover one from an
// interrupted write is removed first) and moved into place only when complete:
//   - `dir` missing or an empty folder: the partial folder is renamed to `dir` in one step;
//   - `dir` a folder with files: as Model::save does, the model's files replace theirs one by one
//     (each rename atomic; other files such as a tokenizer are kept) and the model files that the
//     new layout makes stale (model.safetensors vs the index, shards of another count) are removed.
// A failure before that leaves `dir` as it was and removes the partial folder; parent folders
// created for it are removed again when empty.
//
// InputError when `dir` exists and is not a folder; RuntimeFailure when the file system holding
// `dir` has less free space than the model's bytes, when the machine's memory cannot hold two
// consecutive tensors in f32, or on I/O errors. An exception thrown by `progress` aborts the
// write the same way.
void write_random_model(const ModelConfig & config, uint64_t seed, DType dtype, const std::string & dir,
                        uint64_t max_shard_bytes = 5ull << 30, const WriteProgress & progress = {});

}  // namespace paft
