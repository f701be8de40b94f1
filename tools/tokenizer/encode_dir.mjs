// Test-time oracle for a tokenizer folder (tokenizer.json + tokenizer_config.json), such as the one
// `paft synth` trains: the pinned transformers.js tokenizers (@lenml/tokenizers, see package.json)
// load the folder's files and encode, decode and render chat templates with them. Reads
//   {"dir": DIR, "items": [[text, add_special_tokens], ...], "decode": [[ids], ...],
//    "chats": [[messages, add_generation_prompt], ...]}
// on stdin and writes {"ids": [[...], ...], "texts": [...], "rendered": [...]} on stdout
// (decoding keeps special tokens; chats are rendered by the template, not tokenized).
//   NODE_PATH=build/npm/node_modules node tools/tokenizer/encode_dir.mjs < request.json
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve(process.env.NODE_PATH ?? ".", "noop.js"));
const { TokenizerLoader } = require("@lenml/tokenizers");
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const read = (name) => JSON.parse(fs.readFileSync(path.join(request.dir, name), "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read("tokenizer.json"),
  tokenizerConfig: read("tokenizer_config.json"),
});
const ids = request.items.map(([text, special]) =>
  Array.from(tokenizer.encode(text, { add_special_tokens: special })));
// (transformers.js refuses an empty list; the text of no tokens is "")
const texts = (request.decode ?? []).map((list) =>
  list.length ? tokenizer.decode(list, { skip_special_tokens: false }) : "");
const rendered = (request.chats ?? []).map(([messages, generation]) =>
  tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: generation }));
process.stdout.write(JSON.stringify({ ids, texts, rendered }));
