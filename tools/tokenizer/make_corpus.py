#!/usr/bin/python3
"""Writes tests/data/tokenizer/corpus.jsonl: the strings the tokenizer tests encode, one JSON string
per line. Hand-written cases first (scripts, combining marks, emoji, code, whitespace runs, special-token
strings of the Llama 2, Llama 3 and Qwen3 tokenizers), then seeded random mixes of the same pieces.
Deterministic (fixed seed, stdlib only). Regenerate, then the goldens (make_goldens.mjs):
    /usr/bin/python3 tools/tokenizer/make_corpus.py
Every character is assigned in Unicode 14 (this Python's unicodedata, PCRE2 10.42's tables; ICU 72's
NFC has Unicode 15), so the oracle's newer Unicode tables and ours agree on every character used.
"""
import json
import os
import random
import unicodedata

SEED = 20240611
N_RANDOM = 1900

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "data", "tokenizer", "corpus.jsonl")

# Short texts per script or kind; the random mixes draw from them.
PIECES = {
    "latin": ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "naïve café résumé",
              "Ångström façade jalapeño", "Straße Größe Übermaß", "żółć gęślą jaźń", "Čeština je krásná",
              "Ça va? Très bien!", "ﬁnance ﬂow", "ÆØÅ æøå", "İstanbul ılık", "don't", "I'LL", "we'RE"],
    "cyrillic": ["Привет, мир!", "Съешь же ещё этих мягких французских булок", "Україна їжак ґанок"],
    "greek": ["Καλημέρα κόσμε", "Τὴν γλῶσσαν μοῦ ἔδωσαν ἑλληνικὴν", "ΑΒΓΔ αβγδ ς"],
    "arabic": ["مرحبا بالعالم", "اللُّغَةُ العَرَبِيَّةُ", "٠١٢٣٤٥٦٧٨٩"],
    "hebrew": ["שלום עולם", "עִבְרִית", "אבג"],
    "devanagari": ["नमस्ते दुनिया", "हिन्दी भाषा", "क्षत्रिय"],
    "thai": ["สวัสดีชาวโลก", "ภาษาไทย"],
    "cjk": ["你好，世界！", "我爱自然语言处理。", "漢字テスト", "中文标点：“引号”、《书名》"],
    "korean": ["안녕하세요 세계", "한국어 토크나이저"],
    "kana": ["こんにちは世界", "カタカナ ひらがな", "ｶﾀｶﾅ"],
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "🧑‍💻", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠜎𠜱𠝹", "🀄🃏"],
    "code": ["def f(x):\n    return x ** 2\n", "int main() { return 0; }", "for (auto & v : vec) {\n\tv += 1;\n}",
             '{"key": [1, 2.5, null], "nested": {"a": true}}', "<div class=\"x\">&amp;</div>",
             "x = a[i] if i >= 0 else -1  # comment", "std::vector<int32_t> ids;", "SELECT * FROM t WHERE id=42;"],
    "space": ["   ", "\t", "\n", "\r\n", "\n\n\n", " \t \n ", "\u00a0", "\u3000", "\u2009", "  leading", "trailing  "],
    "digits": ["0", "42", "1234567890", "3.14159", "1,000,000", "2024-06-11", "007", "99999999999999999999"],
    "punct": ["...", "!!!", "?!", "---", "(([[{{", "}}]]))", "@#$%^&*", "«»", "—", "…", "''", '""'],
    "special": ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
                "<|im_sta", "<|im_start", "<s", "</s", "<|begin_of_", "<think>", "</think>", "<tool_call>",
                "<|reserved_special_token_5|>", "<|vision_start|>", "<|fim_prefix|>"],
}

# Combining sequences that NFC changes (or, for the last ones, must leave alone).
DECOMPOSED = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0301", "A\u030a", "c\u0327", "u\u0308\u0301",
              "\u1100\u1161\u11a8", "\u1112\u1161\u11ab", "\u0915\u093c", "s\u0323\u0307", "q\u0307\u0323",
              "\u212b", "\u2126", "e\u0301\u0301", "\u0041\u0300\u0315\u0301", "\u05d0\u05b8"]

HAND = [
    "", " ", "  ", "a", "Hello", " Hello", "Hello ", "  Hello  world  ", "hello\nworld", "hello\r\nworld\r\n",
    "\n", "\t\tindented", "tab\there", "a  b   c    d", "    def f():\n        pass\n",
    "It's", "it's we'll they're I've you'd she'S HE'LL We'Re", "don't won't can't",
    "123", "12345", "1234567", "3.14", "1e10", "0x1F", "１２３", "Version 1.2.3-beta+001",
    "Hello world!!! How are you???", "...and then...", "a.b.c", "a--b", "#$%&", "¿Qué? ¡Sí!",
    "caf\u00e9 vs cafe\u0301", "\u212b vs \u00c5 vs A\u030a", "Cafe\u0301\u0301", "\u1100\u1161", "\uac00",
    "<s>", "</s>", "<s>Hello</s>", " <s> ", "<s><s>", "x<s>y", "<unk>", "<|begin_of_text|>Hello",
    "<|begin_of_text|><|begin_of_text|>", "text <|eot_id|> text", "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>assistant\n<think>\n\n</think>\n\nok<|im_end|>", "<|endoftext|>", "<|im_sta", "<|im_start",
    "<|im_start|", "<<|im_start|>>", "<|<|endoftext|>|>", "</s></s", "<|reserved_special_token_0|>x",
    "emoji 😀 test", "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "🏳️‍🌈 flag", "a😀b", "\U0001F600\U0001F601\U0001F602",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕋𝕖𝕩𝕥", "\u200b zero width \u200d joiner", "\ufeffBOM", "soft\u00adhyphen", "nel\u0085x",
    "ok\u2028line\u2029para", "mixed: English, Русский, 中文, العربية, עברית, हिन्दी, ไทย, 한국어, 日本語",
    "\u0000null", "bell\u0007", "del\u007f", "\u00a0nbsp\u00a0", "ideographic\u3000space",
    "!" * 40, "=" * 64, "-" * 100, " " * 50, "\n" * 20, "\t" * 10, "ab" * 200, "9" * 300,
    "x \ufeff\ufeff y", "a\u0085\u0085 b", "1\u0085 2", "\u0085", "end\ufeff", "\u180e x", "a\u200b\u200b b",
    "\u1680x\u2007y\u202fz\u205f", "\ufeff\ufeff", " \ufeff ", "a \u0085", "\u0085\u0085\n", "x\u0085\u0085",
    "IT'\u017f", "it'\u212a", "we'\u017fll", "x\u00a0\u00a0", "\u00a0 \u00a0",
    "\r\n\r\n", "\r", "a\rb", " \n ", "x \n\n y", "   \n", "\n   ", "end.\n",
]


def assigned(s):
    return all(unicodedata.category(c) != "Cn" for c in s)


def long_texts(rng):
    """Strings of several KB: paragraphs of mixed pieces."""
    out = []
    all_pieces = [p for ps in PIECES.values() for p in ps] + DECOMPOSED
    for n in (2000, 5000, 9000):
        parts, size = [], 0
        while size < n:
            p = rng.choice(all_pieces)
            parts.append(p)
            parts.append(rng.choice([" ", " ", "\n", "", "  ", "\t"]))
            size += len(p.encode("utf-8")) + 1
        out.append("".join(parts))
    out.append(("The quick brown fox. " * 200).strip())
    out.append("\n".join("    line %d: value = %d;" % (i, i * i) for i in range(150)))
    return out


def random_mix(rng):
    """A few pieces of random kinds, glued by random separators, sometimes decomposed (NFD)."""
    kinds = list(PIECES)
    parts = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.1:
            parts.append(rng.choice(DECOMPOSED))
        elif r < 0.15:
            parts.append(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff),
                                         rng.randint(0x3000, 0x9fff), rng.randint(0xac00, 0xd7a3),
                                         rng.randint(0x1f300, 0x1f64f)])))
        else:
            parts.append(rng.choice(PIECES[rng.choice(kinds)]))
        parts.append(rng.choice(["", " ", " ", "  ", "\n", "\t", "\r\n", ", ", "'s ", "'ll ", "'RE "]))
    s = "".join(parts)
    r = rng.random()
    if r < 0.15:
        s = unicodedata.normalize("NFD", s)
    elif r < 0.2:
        s = " " + s
    elif r < 0.25:
        s = s.strip()
    return s


def main():
    rng = random.Random(SEED)
    corpus = list(HAND)
    corpus += [p for ps in PIECES.values() for p in ps]
    corpus += DECOMPOSED
    corpus += [unicodedata.normalize("NFD", p) for p in PIECES["latin"] + PIECES["greek"] + PIECES["korean"]]
    corpus += long_texts(rng)
    while len(corpus) < len(HAND) + N_RANDOM + 150:
        s = random_mix(rng)
        if assigned(s) and s not in corpus:
            corpus.append(s)
    for s in corpus:
        assert assigned(s), repr(s)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    print(f"{len(corpus)} strings -> {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
