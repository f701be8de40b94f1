// A Hugging Face tokenizer (tokenizer.json, tokenizer_config.json) as llama.cpp's GGUF
// vocabulary: tokenizer.ggml.* and tokenizer.chat_template.
//
// Two families are representable:
// - SentencePiece-style BPE with byte fallback (Llama 2, Mistral): model "llama"; tokens by id,
//   scores that give llama.cpp's merge order (a token's score is minus the rank of the first merge
//   in tokenizer.json that produces it, 0 for tokens no merge produces), token types (unknown,
//   control for special added tokens, user-defined for other added tokens, byte for <0xNN>,
//   normal), add_space_prefix from the normalizer (Prepend "▁") or a Metaspace pre-tokenizer.
// - byte-level BPE (GPT-2, Llama 3, Qwen2): model "gpt2"; tokens, merges ("a b"), token types,
//   and the pre-tokenizer's name, told from its split pattern: "llama-bpe" (Llama 3's pattern),
//   "qwen2" (Qwen2's), "gpt-2" (GPT-2's, also a bare ByteLevel pre-tokenizer with use_regex).
// Ids the tokenizer does not use, up to the model's vocab_size, become "[PADn]" tokens of type
// unused (as llama.cpp's converter writes them). Anything else (another model type, another
// normalizer or split pattern) is refused with an InputError naming the field.
#pragma once

#include "gguf/gguf_file.h"
#include "model/config.h"

#include <string>
#include <vector>

namespace paft {

// Reads the tokenizer files of `model_dir` and sets the vocabulary's keys on `writer`. Returns notes
// on what llama.cpp will tokenize differently although the file is as right as GGUF allows (an NFC
// normalizer, which llama.cpp does not apply; a Metaspace pre-tokenizer, whose prefix rule GGUF's
// one add_space_prefix flag cannot state).
std::vector<std::string> write_vocab_metadata(GgufWriter & writer, const std::string & model_dir,
                                              const ModelConfig & config);

}  // namespace paft
