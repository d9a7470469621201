#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "diffuse/text/tokenizer.hpp"

using diffuse::text::Encoded;
using diffuse::text::Tokenizer;
using Ids = std::vector<std::int32_t>;

namespace {

constexpr std::int32_t W(std::string_view w) { return Tokenizer::word_id(w); }
constexpr std::int32_t B(unsigned char b) { return Tokenizer::byte_id(b); }

// Every encoding must hold these, whatever the input.
template <int Ctx>
void check_well_formed(const Encoded<Ctx>& e) {
    REQUIRE(e.length >= 2);
    REQUIRE(e.length <= Ctx);
    CHECK(e.ids[0] == Tokenizer::start_id);
    CHECK(e.ids[std::size_t(e.length - 1)] == Tokenizer::end_id);
    for (int i = 0; i < Ctx; ++i) {
        const auto id = e.ids[std::size_t(i)];
        CHECK(id >= 0);
        CHECK(id < Tokenizer::vocab_size);
        CHECK(e.pad_mask[std::size_t(i)] == (i >= e.length));
        if (i >= e.length) CHECK(id == Tokenizer::pad_id);
        if (i > 0 && i < e.length - 1) CHECK(id >= Tokenizer::byte_base);  // no specials inside
    }
}

template <int Ctx>
Ids ids_of(const Encoded<Ctx>& e) { return Ids(e.ids.begin(), e.ids.begin() + e.length); }

}  // namespace

TEST_CASE("Tokenizer: vocabulary layout is a compile-time constant") {
    static_assert(Tokenizer::vocab_size == 3 + 256 + int(std::size(Tokenizer::words)));
    static_assert(Tokenizer::word_id("a") == Tokenizer::word_base);
    static_assert(Tokenizer::word_id("zebra") == -1);
    static_assert(Tokenizer::byte_id(0) == 3 && Tokenizer::byte_id(255) == 258);
    for (auto w : {"a", "photo", "of", "picture", "black", "and", "white", "t-shirt", "top", "trouser", "pullover",
                   "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle", "boot", "an", "image", "the"})
        CHECK_MESSAGE(W(w) >= Tokenizer::word_base, w);
}

TEST_CASE("Tokenizer: empty and blank strings give start, end and padding") {
    const Tokenizer tok;
    for (const char* s : {"", " ", " \t\n\r\v\f "}) {
        const auto e = tok.encode<8>(s);
        check_well_formed(e);
        CHECK(e.length == 2);
        CHECK_FALSE(e.truncated);
        CHECK(ids_of(e) == Ids{Tokenizer::start_id, Tokenizer::end_id});
    }
    const auto tight = tok.encode<2>("");  // the smallest context
    CHECK(tight.length == 2);
    CHECK_FALSE(tight.truncated);
}

TEST_CASE("Tokenizer: known words map to word tokens, case-insensitively") {
    const Tokenizer tok;
    const auto e = tok.encode<16>("A photo of an Ankle BOOT");
    check_well_formed(e);
    CHECK(ids_of(e) == Ids{Tokenizer::start_id, W("a"), W("photo"), W("of"), W("an"), W("ankle"), W("boot"), Tokenizer::end_id});
    CHECK(ids_of(tok.encode<16>("a black and white picture of a T-Shirt")) ==
          ids_of(tok.encode<16>("A BLACK AND WHITE PICTURE OF A t-shirt")));
    CHECK(Tokenizer::decode(e.ids) == "a photo of an ankle boot");
}

TEST_CASE("Tokenizer: punctuation is split off as byte tokens") {
    CHECK(Tokenizer::tokens("T-shirt/top.") == Ids{W("t-shirt"), B('/'), W("top"), B('.')});
    CHECK(Tokenizer::tokens("boot,bag!") == Ids{W("boot"), B(','), W("bag"), B('!')});
    CHECK(Tokenizer::tokens("(sneaker)") == Ids{B('('), W("sneaker"), B(')')});
    // Unknown hyphenated words fall back to their parts, then to bytes.
    CHECK(Tokenizer::tokens("dark-gray") == Ids{W("dark"), B('-'), W("gray")});
    CHECK(Tokenizer::tokens("-boot-") == Ids{B('-'), W("boot"), B('-')});
    CHECK(Tokenizer::tokens("Red bag") == Ids{B('r'), B('e'), B('d'), W("bag")});
    CHECK(Tokenizer::tokens("a  bag") == Tokenizer::tokens("a\tbag\n"));
    CHECK(Tokenizer::decode(Tokenizer::tokens("a red T-shirt/top.")) == "a red t-shirt/top.");
}

TEST_CASE("Tokenizer: invalid UTF-8, NUL and every byte value have ids") {
    const Tokenizer tok;
    const std::string invalid = "\xff\xfe\xc3(\xa0\xe2\x28\xa1 bag \xf0\x90\x28";
    const auto e = tok.encode<32>(invalid);
    check_well_formed(e);
    CHECK(ids_of(e)[1] == B(0xff));
    CHECK(std::find(e.ids.begin(), e.ids.end(), W("bag")) != e.ids.end());

    const std::string nul("a\0bag\0", 6);
    CHECK(Tokenizer::tokens(nul) == Ids{W("a"), B(0), W("bag"), B(0)});

    // Each byte on its own: whitespace vanishes, every other byte is one token.
    for (int b = 0; b < 256; ++b) {
        const std::string s(1, char(b));
        const auto t = Tokenizer::tokens(s);
        const bool space = b == ' ' || (b >= 9 && b <= 13);
        if (space) { CHECK(t.empty()); continue; }
        REQUIRE(t.size() == 1);
        const unsigned char lowered = (b >= 'A' && b <= 'Z') ? (unsigned char)(b + 32) : (unsigned char)b;
        // "a" is the only one-letter word; other letters and digits spell themselves.
        CHECK(t[0] == (lowered == 'a' ? W("a") : B(lowered)));
    }
    // All 256 values in one string (and reversed): well-formed and never out of range.
    std::string all;
    for (int b = 0; b < 256; ++b) all += char(b);
    check_well_formed(tok.encode<300>(all));
    check_well_formed(tok.encode<300>(std::string(all.rbegin(), all.rend())));
    const auto cut = tok.encode<16>(all);
    check_well_formed(cut);
    CHECK(cut.truncated);
}

TEST_CASE("Tokenizer: long prompts are truncated with the end token kept") {
    const Tokenizer tok;
    std::string long_prompt;
    for (int i = 0; i < 100000; ++i) long_prompt += "a photo of a bag ";
    const auto e = tok.encode<10>(long_prompt);
    check_well_formed(e);
    CHECK(e.truncated);
    CHECK(e.length == 10);
    CHECK(e.ids[9] == Tokenizer::end_id);
    CHECK(ids_of(e) == Ids{Tokenizer::start_id, W("a"), W("photo"), W("of"), W("a"), W("bag"), W("a"), W("photo"),
                           W("of"), Tokenizer::end_id});

    // Exactly full is not truncated; one more token is.
    const auto full = tok.encode<5>("a photo of");
    CHECK(full.length == 5);
    CHECK_FALSE(full.truncated);
    const auto over = tok.encode<5>("a photo of a");
    CHECK(over.length == 5);
    CHECK(over.truncated);
    CHECK(tok.encode<2>("bag").truncated);
    // Trailing whitespace after a full context is not a lost token.
    CHECK_FALSE(tok.encode<5>("a photo of   ").truncated);
}

TEST_CASE("Tokenizer: encoding is deterministic and batches match single prompts") {
    const Tokenizer tok;
    const std::string p = "A black and white picture of a Sneaker.";
    const auto a = tok.encode<12>(p);
    const auto b = tok.encode<12>(p);
    CHECK(std::equal(a.ids.begin(), a.ids.end(), b.ids.begin()));
    CHECK(std::equal(a.pad_mask.begin(), a.pad_mask.end(), b.pad_mask.begin()));

    const std::vector<std::string> prompts{"a bag", p, "", "a photo of a photo of a photo of a photo"};
    diffuse::Tensor<std::int32_t, 4, 12> ids;
    diffuse::Tensor<bool, 4, 12> mask;
    ids.fill(-7);
    CHECK(Tokenizer::encode_batch<4, 12>(prompts, ids.view(), mask.view()) == 1);
    for (int i = 0; i < 4; ++i) {
        const auto e = tok.encode<12>(prompts[std::size_t(i)]);
        for (int k = 0; k < 12; ++k) {
            CHECK(ids(i, k) == e.ids[std::size_t(k)]);
            CHECK(mask(i, k) == e.pad_mask[std::size_t(k)]);
        }
    }
    CHECK_THROWS_AS((Tokenizer::encode_batch<3, 12>(prompts, diffuse::View<std::int32_t, 3, 12>(ids.data()),
                                                     diffuse::View<bool, 3, 12>(mask.data()))),
                    std::invalid_argument);
}

TEST_CASE("Tokenizer: token_text names every id") {
    CHECK(Tokenizer::token_text(Tokenizer::pad_id) == "<pad>");
    CHECK(Tokenizer::token_text(Tokenizer::start_id) == "<start>");
    CHECK(Tokenizer::token_text(Tokenizer::end_id) == "<end>");
    CHECK(Tokenizer::token_text(B('x')) == "x");
    CHECK(Tokenizer::token_text(B(0)) == "<0x00>");
    CHECK(Tokenizer::token_text(B(0xE9)) == "<0xE9>");
    CHECK(Tokenizer::token_text(W("sandal")) == "sandal");
    CHECK(Tokenizer::token_text(Tokenizer::vocab_size) == "<unk:" + std::to_string(Tokenizer::vocab_size) + ">");
}
