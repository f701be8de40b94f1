#!/usr/bin/env node
// llama.cpp as a test oracle and benchmark peer, through node-llama-cpp's prebuilt CPU build
// (pinned in package-lock.json, installed by install_oracle.sh). Test-time only.
//
//   node tools/llamacpp/oracle.mjs [DEST] < request.json > result.json
//
// DEST is the install_oracle.sh directory holding node_modules/node-llama-cpp (default: $PAFT_LLAMACPP,
// then this script's own directory). One JSON request on stdin, one JSON result on stdout (one line);
// diagnostics go to stderr. On any error: {"error": "..."} on stdout and exit code 1.
//
// Requests ("threads" defaults to 2 everywhere; llama.cpp's own log is quiet unless
// PAFT_LLAMACPP_LOG=warn|info|debug):
//   {"op":"greedy","model":PATH,"lora":[{"path":P,"scale":S}],"prompts":[[ids..],..],"n_new":64,
//    "threads":2,"context":N,"margins":false,"fresh_context":false,"kv_type":"f16","flash_attention":false}
//     -> {"tokens":[[..],..]}  (+ "margins":[[..],..] when asked: per generated token, the logit gap between
//     llama.cpp's top-1 and top-2 candidates, ln(p1/p2); null when p2 underflows)
//     Each prompt's ids are fed as they are (no BOS added) into an empty sequence (the KV cache is cleared
//     between prompts; "fresh_context": true makes a new context per prompt instead); n_new tokens are taken
//     greedily (argmax of the logits, no penalties) and EOS/EOG does not stop generation. "context" (the KV
//     size, default the smallest that fits; node-llama-cpp pads it up to a multiple of 256) must hold
//     prompt + n_new tokens: there is never a context shift. The prompt is prefilled in one llama_decode
//     (n_batch = n_ubatch = the longest prompt unless "batch" is given) with logits for its last token only.
//     Defaults: KV cache f16 (llama.cpp's default; "kv_type":"f32" for a tighter comparison) and flash
//     attention off (llama.cpp's own default is "auto").
//   {"op":"tokenize","model":PATH,"texts":[..],"special":true} -> {"ids":[[..],..]}
//     llama.cpp's tokenizer with add_special = false (no BOS/EOS added); "special": parse special-token
//     text such as "<s>" as the special token. A SentencePiece-style vocabulary with add_space_prefix
//     still gets its leading "▁".
//   {"op":"detokenize","model":PATH,"ids":[[..],..],"special":false} -> {"texts":[..]}
//     "special": render control tokens as their text (false renders them as "").
//   {"op":"bench","model":PATH,"threads":2,"prompt":[ids],"n_new":N,"repeats":R,"warmup":1,...}
//     -> {"prefill_s","decode_tokens_per_s" (medians over R repeats), "..._best", the per-repeat lists,
//         "init_s" (getLlama), "load_s" (loadModel), "context_s" (createContext), "peak_rss_bytes"}
//     prefill = the prompt in one batch (one sequence) up to and including the first sampled token;
//     decode = n_new further single-token steps (evaluate the previous token + argmax). Also takes "lora",
//     "kv_type", "flash_attention", "context", "batch", "use_mmap" (default true; false: llama.cpp's
//     --no-mmap, the weights read into buffers of its own). Only meaningful on otherwise idle cores: llama.cpp's
//     worker threads spin-wait, so a busy core shared with another process makes decoding collapse.
//   {"op":"info","model":PATH} -> vocabulary size, train context size, BOS/EOS/EOT ids, architecture,
//     parameter count, flattened GGUF metadata (long arrays as their length), llama.cpp release.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const t_start = performance.now();

const lastErrors = []; // llama.cpp's last error log lines, appended to the error result
function fail(msg) {
  let error = String(msg);
  const logged = [...new Set(lastErrors)].filter((m) => m && !error.includes(m));
  if (logged.length > 0) error += " (llama.cpp: " + logged.join("; ") + ")";
  process.stdout.write(JSON.stringify({ error }) + "\n", () => process.exit(1));
}
function done(result) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
}
process.on("unhandledRejection", (e) => fail(e?.stack ?? e));
process.on("uncaughtException", (e) => fail(e?.stack ?? e));

const dest = process.argv[2] ?? process.env.PAFT_LLAMACPP ?? path.dirname(fileURLToPath(import.meta.url));
const entry = path.join(dest, "node_modules", "node-llama-cpp", "dist", "index.js");

function vmKb(field) {
  const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp("^" + field + ":\\s+(\\d+) kB", "m"));
  return m ? Number(m[1]) * 1024 : null;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function checkIds(ids, what) {
  if (!Array.isArray(ids) || !ids.every((t) => Number.isInteger(t) && t >= 0))
    throw new Error(`${what} must be an array of non-negative integer token ids`);
}

async function main() {
  const input = fs.readFileSync(0, "utf8");
  let req;
  try {
    req = JSON.parse(input);
  } catch (e) {
    throw new Error("request is not JSON: " + e.message);
  }
  if (req == null || typeof req !== "object") throw new Error("request must be a JSON object");
  if (typeof req.model !== "string") throw new Error('"model" (a GGUF path) is required');
  if (!fs.existsSync(req.model)) throw new Error("model file not found: " + req.model);
  if (!fs.existsSync(entry)) throw new Error(`node-llama-cpp not installed under ${dest} (run tools/llamacpp/install_oracle.sh DEST)`);

  const nlc = await import(pathToFileURL(entry).href);
  const { getLlama, LlamaLogLevel } = nlc;
  const threads = Number.isInteger(req.threads) && req.threads > 0 ? req.threads : 2;
  const logLevel = process.env.PAFT_LLAMACPP_LOG ?? LlamaLogLevel.error;

  const t0 = performance.now();
  // gpu: false -> the CPU build; build: "never" + skipDownload -> never compile or fetch anything.
  const llama = await getLlama({
    gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel, logger: (level, message) => {
      if (level === "error" || level === "fatal") lastErrors.push(message.trim()), lastErrors.splice(0, lastErrors.length - 4);
      process.stderr.write(`[llama.cpp ${level}] ${message}\n`);
    },
    maxThreads: threads,
  });
  const init_s = (performance.now() - t0) / 1000;

  const vocabOnly = req.op === "tokenize" || req.op === "detokenize";
  const t1 = performance.now();
  let model;
  try {
    model = await llama.loadModel({ modelPath: req.model, gpuLayers: 0, vocabOnly, ignoreMemorySafetyChecks: true,
                                    useMmap: req.use_mmap ?? true });
  } catch (e) {
    throw new Error(`failed to load model ${req.model}: ${e?.message ?? e}`);
  }
  const load_s = (performance.now() - t1) / 1000;

  const contextOptions = (size, batch) => {
    const o = {
      contextSize: size, batchSize: batch, threads, sequences: 1, ignoreMemorySafetyChecks: true,
      failedCreationRemedy: false, flashAttention: Boolean(req.flash_attention),
    };
    if (req.kv_type != null) {
      const kv = String(req.kv_type).toUpperCase();
      if (!["F32", "F16", "BF16", "Q8_0"].includes(kv)) throw new Error(`"kv_type" must be f32, f16, bf16 or q8_0`);
      o.experimentalKvCacheKeyType = o.experimentalKvCacheValueType = kv;
    }
    if (req.lora != null) {
      if (!Array.isArray(req.lora)) throw new Error('"lora" must be an array of {path, scale}');
      for (const a of req.lora) if (!fs.existsSync(a.path)) throw new Error("LoRA file not found: " + a.path);
      o.lora = { adapters: req.lora.map((a) => ({ filePath: a.path, scale: a.scale ?? 1 })) };
    }
    return o;
  };
  const noShift = {
    size: 1,
    strategy: () => { throw new Error("context full: raise \"context\" (no context shift is done)"); },
  };
  // temperature 0 -> node-llama-cpp's sampler chain is llama_sampler_init_greedy() alone (repeat, DRY and
  // XTC penalties and token biases are only added when passed); yieldEogToken: EOS/EOG does not end it.
  const greedyOptions = { temperature: 0, yieldEogToken: true, contextShift: noShift };

  switch (req.op) {
    case "tokenize": {
      if (!Array.isArray(req.texts)) throw new Error('"texts" must be an array of strings');
      const special = req.special ?? true;
      return { ids: req.texts.map((t) => model.tokenize(String(t), Boolean(special))) };
    }
    case "detokenize": {
      if (!Array.isArray(req.ids)) throw new Error('"ids" must be an array of id arrays');
      req.ids.forEach((ids) => checkIds(ids, "each ids entry"));
      return { texts: req.ids.map((ids) => model.detokenize(ids, Boolean(req.special ?? false))) };
    }
    case "info": {
      const md = model.fileInfo.metadata ?? {};
      const flat = {};
      const walk = (o, prefix) => {
        for (const [k, v] of Object.entries(o)) {
          const key = prefix ? prefix + "." + k : k;
          if (typeof v === "bigint") flat[key] = Number(v);
          else if (Array.isArray(v)) flat[key] = v.length <= 16 ? v.map((x) => (typeof x === "bigint" ? Number(x) : x)) : { array_length: v.length };
          else if (v != null && typeof v === "object") walk(v, key);
          else flat[key] = v;
        }
      };
      walk(md, "");
      const embd = (model.fileInfo.tensorInfo ?? []).find((t) => t.name === "token_embd.weight");
      const tokensLen = md.tokenizer?.ggml?.tokens?.length;
      return {
        architecture: model.architecture,
        name: md.general?.name ?? null,
        vocab_size: tokensLen ?? (embd ? Number(embd.dimensions[1]) : null),
        train_context_size: model.trainContextSize,
        embedding_size: model.embeddingVectorSize,
        bos: model.tokens.bos ?? null,
        eos: model.tokens.eos ?? null,
        eot: model.tokens.eot ?? null,
        add_bos: model.tokens.shouldPrependBosToken,
        add_eos: model.tokens.shouldAppendEosToken,
        vocabulary_type: model.vocabularyType,
        description: model.typeDescription,
        size_bytes: model.size,
        n_params: model._model.getTotalParameters?.() ?? null,
        n_tensors: (model.fileInfo.tensorInfo ?? []).length,
        gguf_version: model.fileInfo.version,
        llama_cpp_release: llama.llamaCppRelease?.release ?? null,
        build_type: llama.buildType,
        metadata: flat,
      };
    }
    case "greedy": {
      if (!Array.isArray(req.prompts) || req.prompts.length === 0) throw new Error('"prompts" must be a non-empty array of id arrays');
      req.prompts.forEach((p) => { checkIds(p, "each prompt"); if (p.length === 0) throw new Error("empty prompt"); });
      const nNew = req.n_new ?? 64;
      if (!Number.isInteger(nNew) || nNew < 1) throw new Error('"n_new" must be a positive integer');
      const longest = Math.max(...req.prompts.map((p) => p.length));
      const need = longest + nNew;
      const ctxSize = req.context ?? need;
      if (ctxSize < need) throw new Error(`"context" ${ctxSize} < longest prompt + n_new = ${need}`);
      const batch = Math.min(req.batch ?? longest, ctxSize);
      const wantMargins = Boolean(req.margins);
      let context = null, seq = null;
      const tokens = [], margins = [];
      for (const prompt of req.prompts) {
        if (context == null || req.fresh_context) {
          if (context != null) await context.dispose();
          context = await model.createContext(contextOptions(ctxSize, batch));
          seq = context.getSequence(); // a context with sequences: 1 hands out its one sequence once
        }
        await seq.clearHistory(); // llama_memory_seq_rm over the whole sequence
        if (seq.nextTokenIndex !== 0) throw new Error("sequence not empty after clearHistory");
        const out = [], marg = [];
        const it = seq.evaluateWithMetadata(prompt, { probabilities: wantMargins }, greedyOptions);
        for (let i = 0; i < nNew; i++) {
          const r = await it.next();
          if (r.done) throw new Error("generation ended early");
          out.push(r.value.token);
          if (wantMargins) {
            // The candidates are the full vocabulary with raw logits (the greedy sampler does not change
            // them); check that the token is their argmax and report the top-1/top-2 gap.
            let p1 = -1, p2 = -1, t1 = -1;
            for (const [t, p] of r.value.probabilities) {
              if (p > p1) { p2 = p1; p1 = p; t1 = t; } else if (p > p2) p2 = p;
            }
            if (t1 !== r.value.token && p1 !== r.value.probabilities.get(r.value.token))
              throw new Error(`sampled token ${r.value.token} is not the argmax ${t1}`);
            marg.push(p2 > 0 ? Math.log(p1 / p2) : null);
          }
        }
        await it.return();
        tokens.push(out);
        if (wantMargins) margins.push(marg);
      }
      const res = { tokens };
      if (wantMargins) res.margins = margins;
      return res;
    }
    case "bench": {
      const prompt = req.prompt;
      checkIds(prompt, '"prompt"');
      if (prompt.length === 0) throw new Error("empty prompt");
      const nNew = req.n_new ?? 64, repeats = req.repeats ?? 3, warmup = req.warmup ?? 1;
      const need = prompt.length + nNew + 1;
      const ctxSize = req.context ?? need;
      if (ctxSize < need) throw new Error(`"context" ${ctxSize} < prompt + n_new + 1 = ${need}`);
      const t2 = performance.now();
      const context = await model.createContext(contextOptions(ctxSize, Math.min(req.batch ?? prompt.length, ctxSize)));
      const context_s = (performance.now() - t2) / 1000;
      const seq = context.getSequence();
      const prefill = [], decode = [];
      for (let r = 0; r < warmup + repeats; r++) {
        await seq.clearHistory();
        const it = seq.evaluate(prompt, greedyOptions);
        const a = performance.now();
        await it.next();
        const b = performance.now();
        for (let i = 0; i < nNew; i++) await it.next();
        const c = performance.now();
        await it.return();
        if (r >= warmup) {
          prefill.push((b - a) / 1000);
          decode.push(nNew / ((c - b) / 1000));
        }
      }
      return {
        prefill_s: median(prefill), decode_tokens_per_s: median(decode), statistic: "median",
        prefill_s_best: Math.min(...prefill), decode_tokens_per_s_best: Math.max(...decode),
        prefill_s_all: prefill, decode_tokens_per_s_all: decode,
        prompt_tokens: prompt.length, n_new: nNew, repeats, threads,
        init_s, load_s, context_s, peak_rss_bytes: vmKb("VmHWM"), rss_bytes: vmKb("VmRSS"),
        total_s: (performance.now() - t_start) / 1000, llama_cpp_release: llama.llamaCppRelease?.release ?? null,
      };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(req.op)} (greedy, tokenize, detokenize, bench, info)`);
  }
}

main().then(done, (e) => fail(e?.message ?? e));
