// A word-level tokenizer whose vocabulary is data: learned from a data set's training captions
// (Tokenizer::learn), saved with the model (to_string / from_string, a weights file's metadata) and
// restored with it. Like the seed's StartEndPacker, a sequence is  start, tokens..., end, pad...  in a
// fixed context of Ctx ids, with a padding mask; a prompt too long for the context is cut (the end
// token is kept) and the result says so. Encoding never fails: every byte string has ids.
//
// Splitting: ASCII letters are lower-cased; ASCII whitespace separates; a word is a run of
// [a-z0-9-] (and, in the `token` layout, bytes >= 0x80, so UTF-8 words stay whole). A word in the
// vocabulary is one token; otherwise, if it holds hyphens, its parts are looked up on their own
// ("dark-gray" -> dark, '-', gray). Every other byte (punctuation, control bytes) is a one-character
// word of its own. Whitespace leaves no token, so "a  bag" and "a bag" encode alike.
//
// What a word outside the vocabulary becomes is the layout's choice:
//   Unknown::token  ids 0 pad, 1 start, 2 end, 3 <unk>, then the words: an unknown word is one <unk>.
//                   Training shows the model <unk> in captions (distractor words), so it learns to
//                   ignore what it cannot read; spelled-out bytes would be inputs it never saw.
//   Unknown::bytes  ids 0 pad, 1 start, 2 end, 3..258 the bytes 0..255, then the words: an unknown
//                   word is spelled byte by byte (the layout of the first shipped Fashion model).
#ifndef DIFFUSE_TEXT_TOKENIZER_HPP
#define DIFFUSE_TEXT_TOKENIZER_HPP

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "diffuse/core/tensor.hpp"

namespace diffuse::text {

/// One encoded prompt in a context of Ctx tokens.
template <int Ctx>
struct Encoded {
    Tensor<std::int32_t, Ctx> ids;  // [Ctx] start, tokens..., end, pad...
    Tensor<bool, Ctx> pad_mask;     // [Ctx] true where ids holds padding
    int length = 0;                 // non-pad ids, start and end included
    bool truncated = false;         // the prompt had more tokens than fit
};

/// What encode_into reports besides the ids it wrote.
struct EncodeInfo {
    int length = 0;
    bool truncated = false;
};

class Tokenizer {
public:
    static constexpr std::int32_t pad_id = 0, start_id = 1, end_id = 2;
    static constexpr std::size_t max_word_bytes = 32;  // longer runs are never vocabulary words
    enum class Unknown { token, bytes };

    /// An empty vocabulary: every word is `<unk>`.
    Tokenizer() : Tokenizer(std::vector<std::string>{}, Unknown::token) {}

    /// Words in id order (word i has id word_base() + i). Each must be non-empty, at most
    /// max_word_bytes, lower case, unique, and one word as the splitter sees it.
    Tokenizer(std::vector<std::string> words, Unknown unknown) : words_(std::move(words)), unknown_(unknown) {
        sorted_.reserve(words_.size());
        for (std::size_t i = 0; i < words_.size(); ++i) {
            const std::string& w = words_[i];
            if (w.empty() || w.size() > max_word_bytes)
                throw std::invalid_argument("Tokenizer: word " + std::to_string(i) + " is empty or longer than " +
                                            std::to_string(max_word_bytes) + " bytes");
            std::vector<std::string> pieces;
            split(w, [&](std::string_view p) { pieces.emplace_back(p); });
            if (pieces.size() != 1 || pieces[0] != w)
                throw std::invalid_argument("Tokenizer: '" + w + "' is not one lower-case word");
            sorted_.emplace_back(w, word_base() + std::int32_t(i));
        }
        std::sort(sorted_.begin(), sorted_.end());
        for (std::size_t i = 1; i < sorted_.size(); ++i)
            if (sorted_[i].first == sorted_[i - 1].first)
                throw std::invalid_argument("Tokenizer: the word '" + sorted_[i].first + "' appears twice");
    }

    /// The vocabulary of a set of captions: every word seen at least min_count times, the most
    /// frequent first (ties in byte order), at most max_words of them. Deterministic.
    template <class Captions>
    static Tokenizer learn(const Captions& captions, std::size_t max_words, int min_count = 1) {
        std::map<std::string, long, std::less<>> counts;
        for (const auto& c : captions)
            split(std::string_view(c), [&](std::string_view w) {
                if (w.size() > max_word_bytes) return;
                auto it = counts.find(w);
                if (it == counts.end()) it = counts.emplace(std::string(w), 0).first;
                ++it->second;
            });
        std::vector<std::pair<long, std::string>> ranked;
        for (auto& [w, n] : counts)
            if (n >= min_count) ranked.emplace_back(-n, w);
        std::sort(ranked.begin(), ranked.end());
        if (ranked.size() > max_words) ranked.resize(max_words);
        std::vector<std::string> words;
        for (auto& r : ranked) words.push_back(std::move(r.second));
        return Tokenizer(std::move(words), Unknown::token);
    }

    Unknown unknown() const { return unknown_; }
    const std::vector<std::string>& words() const { return words_; }
    std::int32_t word_base() const { return unknown_ == Unknown::token ? 4 : 3 + 256; }
    /// Ids run from 0 to vocab_size() - 1: the text encoder's table must hold at least this many.
    int vocab_size() const { return int(word_base()) + int(words_.size()); }
    /// The `<unk>` id (Unknown::token layout).
    static constexpr std::int32_t unk_id = 3;
    /// The id of byte b (Unknown::bytes layout).
    static constexpr std::int32_t byte_id(unsigned char b) { return 3 + std::int32_t(b); }

    /// The id of a lower-case vocabulary word, or -1.
    std::int32_t word_id(std::string_view w) const {
        const auto it = std::lower_bound(sorted_.begin(), sorted_.end(), w,
                                         [](const auto& e, std::string_view k) { return e.first < k; });
        return it != sorted_.end() && it->first == w ? it->second : -1;
    }

    /// Calls emit(id) for each token of text (no start/end); stops early when emit returns false.
    /// Allocates nothing.
    template <class Emit>
    void tokenize(std::string_view text, Emit&& emit) const {
        const bool utf8_words = unknown_ == Unknown::token;
        std::size_t i = 0;
        const std::size_t n = text.size();
        char buf[max_word_bytes];
        while (i < n) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (is_space(c)) {
                ++i;
                continue;
            }
            if (!is_word_char(c, utf8_words)) {
                buf[0] = lower(c);
                if (!emit_unknown_or(word_id(std::string_view(buf, 1)), std::string_view(buf, 1), emit)) return;
                ++i;
                continue;
            }
            std::size_t j = i;
            while (j < n && is_word_char(static_cast<unsigned char>(text[j]), utf8_words)) ++j;
            if (!emit_word(text.substr(i, j - i), buf, emit)) return;
            i = j;
        }
    }

    /// All tokens of text, without start/end and without a length limit.
    std::vector<std::int32_t> tokens(std::string_view text) const {
        std::vector<std::int32_t> out;
        tokenize(text, [&](std::int32_t id) {
            out.push_back(id);
            return true;
        });
        return out;
    }

    /// Writes start, tokens, end, then padding into ids [Ctx] and the mask [Ctx] (true = pad).
    template <int Ctx>
    EncodeInfo encode_into(std::string_view text, View<std::int32_t, Ctx> ids, View<bool, Ctx> pad_mask) const {
        static_assert(Ctx >= 2, "Tokenizer: the context must hold at least the start and end tokens");
        EncodeInfo info;
        int k = 0;
        ids[k++] = start_id;
        tokenize(text, [&](std::int32_t id) {
            if (k == Ctx - 1) {
                info.truncated = true;
                return false;
            }
            ids[k++] = id;
            return true;
        });
        ids[k++] = end_id;
        info.length = k;
        for (int p = 0; p < Ctx; ++p) pad_mask[p] = p >= k;
        for (; k < Ctx; ++k) ids[k] = pad_id;
        return info;
    }

    template <int Ctx>
    Encoded<Ctx> encode(std::string_view text) const {
        Encoded<Ctx> e;
        const EncodeInfo info = encode_into<Ctx>(text, e.ids.view(), e.pad_mask.view());
        e.length = info.length;
        e.truncated = info.truncated;
        return e;
    }

    /// Encodes a batch of N prompts into ids [N, Ctx] and pad_mask [N, Ctx]; returns how many
    /// were truncated. prompts is any sized range of things convertible to std::string_view.
    template <int N, int Ctx, class Prompts>
    int encode_batch(const Prompts& prompts, View<std::int32_t, N, Ctx> ids, View<bool, N, Ctx> pad_mask) const {
        if (std::size(prompts) != std::size_t(N))
            throw std::invalid_argument("Tokenizer::encode_batch: " + std::to_string(std::size(prompts)) +
                                        " prompts for a batch of " + std::to_string(N));
        int truncated = 0, i = 0;
        for (const auto& p : prompts) {
            truncated += encode_into<Ctx>(std::string_view(p), ids.item(i), pad_mask.item(i)).truncated;
            ++i;
        }
        return truncated;
    }

    /// How many tokens of text are `<unk>` or spelled-out bytes: what the model cannot read.
    int unknown_count(std::string_view text) const {
        int n = 0;
        tokenize(text, [&](std::int32_t id) {
            n += id >= 3 && id < word_base();
            return true;
        });
        return n;
    }

    /// A readable form of one id: "<pad>", "<start>", "<end>", "<unk>", a word, a printable byte,
    /// or "<0xNN>"; "<id:ID>" for an id outside the vocabulary.
    std::string token_text(std::int32_t id) const {
        if (id == pad_id) return "<pad>";
        if (id == start_id) return "<start>";
        if (id == end_id) return "<end>";
        if (id >= word_base() && id < vocab_size()) return words_[std::size_t(id - word_base())];
        if (unknown_ == Unknown::token && id == unk_id) return "<unk>";
        if (unknown_ == Unknown::bytes && id >= 3 && id < word_base()) {
            const int b = id - 3;
            if (b > 0x20 && b < 0x7F) return std::string(1, char(b));
            static constexpr char hex[] = "0123456789ABCDEF";
            return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
        }
        return "<id:" + std::to_string(id) + ">";
    }

    /// Text for ids, for logs and tests: stops at the end token, skips start and pad, puts a space
    /// between words but not before punctuation (whitespace itself was not kept, so this is not an
    /// exact inverse).
    template <class Ids>
    std::string decode(const Ids& ids) const {
        std::string out;
        enum { other, word, alnum_byte } prev = other;
        for (std::int32_t id : ids) {
            if (id == end_id) break;
            if (id == pad_id || id == start_id) continue;
            const std::string t = token_text(id);
            const bool is_byte = unknown_ == Unknown::bytes && id >= 3 && id < word_base();
            const bool alnum = t.size() == 1 && is_word_char(static_cast<unsigned char>(t[0]), false) && t[0] != '-';
            if (is_byte) {
                if (alnum && prev == word) out += ' ';
                out += char(id - 3);
                prev = alnum ? alnum_byte : other;
                continue;
            }
            const bool punct = t.size() == 1 && !alnum && t[0] != '-';
            if (prev != other && !punct) out += ' ';
            out += t;  // punctuation words attach to what precedes them: "drink: apple"
            prev = word;
        }
        return out;
    }

    /// The vocabulary as one string (what a weights file stores): the layout, then the words in id
    /// order, separated by single spaces (words hold no whitespace).
    std::string to_string() const {
        std::string out = unknown_ == Unknown::token ? "words+unk" : "words+bytes";
        for (const auto& w : words_) (out += ' ') += w;
        return out;
    }
    /// The inverse of to_string; throws on anything else.
    static Tokenizer from_string(std::string_view s) {
        std::vector<std::string> fields;
        std::size_t i = 0;
        while (i < s.size()) {
            const std::size_t j = std::min(s.find(' ', i), s.size());
            if (j == i) throw std::invalid_argument("Tokenizer::from_string: empty word at byte " + std::to_string(i));
            fields.emplace_back(s.substr(i, j - i));
            i = j + 1;
        }
        if (fields.empty() || (fields[0] != "words+unk" && fields[0] != "words+bytes"))
            throw std::invalid_argument(
                "Tokenizer::from_string: the vocabulary must start with its layout "
                "('words+unk' or 'words+bytes')");
        const Unknown u = fields[0] == "words+unk" ? Unknown::token : Unknown::bytes;
        fields.erase(fields.begin());
        return Tokenizer(std::move(fields), u);
    }

    friend bool operator==(const Tokenizer& a, const Tokenizer& b) {
        return a.unknown_ == b.unknown_ && a.words_ == b.words_;
    }

private:
    static constexpr bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
    static constexpr bool is_word_char(unsigned char c, bool utf8) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               (utf8 && c >= 0x80);
    }
    static constexpr char lower(unsigned char c) { return char((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c); }

    /// The pieces the splitter makes of text, lower-cased (for learning and validating words):
    /// word runs whole, every other non-space byte on its own.
    template <class F>
    static void split(std::string_view text, F&& f) {
        std::string piece;
        for (std::size_t i = 0; i < text.size();) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (is_space(c)) {
                ++i;
                continue;
            }
            piece.clear();
            if (!is_word_char(c, true)) {
                piece += lower(c);
                ++i;
            } else {
                for (; i < text.size() && is_word_char(static_cast<unsigned char>(text[i]), true); ++i)
                    piece += lower(static_cast<unsigned char>(text[i]));
            }
            f(std::string_view(piece));
        }
    }

    /// id when it is a word; otherwise <unk> or the piece's bytes.
    template <class Emit>
    bool emit_unknown_or(std::int32_t id, std::string_view piece, Emit& emit) const {
        if (id >= 0) return emit(id);
        if (unknown_ == Unknown::token) return emit(unk_id);
        for (char ch : piece)
            if (!emit(byte_id(static_cast<unsigned char>(ch)))) return false;
        return true;
    }

    /// One run of word characters: a vocabulary word, else its hyphen-separated parts, else unknown.
    template <class Emit>
    bool emit_word(std::string_view run, char* buf, Emit& emit) const {
        if (run.size() <= max_word_bytes) {
            for (std::size_t k = 0; k < run.size(); ++k) buf[k] = lower(static_cast<unsigned char>(run[k]));
            const std::int32_t id = word_id(std::string_view(buf, run.size()));
            if (id >= 0) return emit(id);
        }
        if (run.find('-') != std::string_view::npos) {
            std::size_t start = 0;
            while (true) {
                const std::size_t h = run.find('-', start);
                const std::string_view part =
                    run.substr(start, h == std::string_view::npos ? run.size() - start : h - start);
                if (!part.empty() && !emit_word(part, buf, emit)) return false;
                if (h == std::string_view::npos) return true;
                if (!emit_unknown_or(word_id("-"), "-", emit)) return false;
                start = h + 1;
            }
        }
        if (run.size() <= max_word_bytes) return emit_unknown_or(-1, std::string_view(buf, run.size()), emit);
        if (unknown_ == Unknown::token) return emit(unk_id);
        for (char ch : run)
            if (!emit(byte_id(static_cast<unsigned char>(lower(static_cast<unsigned char>(ch)))))) return false;
        return true;
    }

    std::vector<std::string> words_;  // in id order
    Unknown unknown_;
    std::vector<std::pair<std::string, std::int32_t>> sorted_;  // (word, id) by word, for lookup
};

}  // namespace diffuse::text

#endif
