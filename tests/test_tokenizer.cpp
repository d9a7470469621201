// text::Tokenizer: a vocabulary learned from captions (token layout, <unk> for unknown words), the
// first shipped model's layout (byte fallback), encoding rules, truncation, and the vocabulary saved
// and restored as a string.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "diffuse/text/tokenizer.hpp"

using diffuse::text::Encoded;
using diffuse::text::Tokenizer;
using Ids = std::vector<std::int32_t>;

namespace {

/// The word list of the first shipped Fashion-MNIST model (ids 259 + i).
const std::vector<std::string> kLegacyWords = {
    "a",     "an",         "the",       "of",         "and",      "in",     "on",      "with",   "photo",    "picture",
    "image", "drawing",    "sketch",    "black",      "white",    "gray",   "grey",    "dark",   "light",    "small",
    "low",   "resolution", "grayscale", "fashion",    "clothing", "item",   "product", "pair",   "piece",    "one",
    "this",  "is",         "for",       "background", "t-shirt",  "tshirt", "tee",     "top",    "trouser",  "trousers",
    "pants", "jeans",      "pullover",  "sweater",    "jumper",   "dress",  "coat",    "jacket", "sandal",   "sandals",
    "shirt", "sneaker",    "sneakers",  "shoe",       "shoes",    "bag",    "handbag", "purse",  "ankle",    "boot",
    "boots", "t-shirts",   "tops",      "pullovers",  "dresses",  "coats",  "shirts",  "bags",   "sweaters", "jackets",
    "some",  "two",        "style"};

const Tokenizer& legacy() {
    static const Tokenizer t(kLegacyWords, Tokenizer::Unknown::bytes);
    return t;
}
const Tokenizer& learned() {
    static const Tokenizer t =
        Tokenizer::learn(std::vector<std::string>{"a photo of a bag", "a photo of a boot", "food and drink: red apple",
                                                  "A T-shirt", "an image of a bag"},
                         100);
    return t;
}

// Every encoding must hold these, whatever the input.
template <int Ctx>
void check_well_formed(const Tokenizer& tok, const Encoded<Ctx>& e) {
    REQUIRE(e.length >= 2);
    REQUIRE(e.length <= Ctx);
    CHECK(e.ids[0] == Tokenizer::start_id);
    CHECK(e.ids[std::size_t(e.length - 1)] == Tokenizer::end_id);
    for (int i = 0; i < Ctx; ++i) {
        const auto id = e.ids[std::size_t(i)];
        CHECK(id >= 0);
        CHECK(id < tok.vocab_size());
        CHECK(e.pad_mask[std::size_t(i)] == (i >= e.length));
        if (i >= e.length) CHECK(id == Tokenizer::pad_id);
        if (i > 0 && i < e.length - 1) CHECK(id >= 3);  // no specials inside
    }
}

template <int Ctx>
Ids ids_of(const Encoded<Ctx>& e) {
    return Ids(e.ids.begin(), e.ids.begin() + e.length);
}

}  // namespace

TEST_CASE("Tokenizer::learn: words by frequency, ties in byte order, capped and thresholded") {
    const Tokenizer& t = learned();
    // a ×4, of ×3, bag ×2, photo ×2, then the singles in byte order (':' sorts before letters).
    const std::vector<std::string> want{"a",     "of",   "bag",   "photo", ":",     "an",  "and",
                                        "apple", "boot", "drink", "food",  "image", "red", "t-shirt"};
    CHECK(t.words() == want);
    CHECK(t.unknown() == Tokenizer::Unknown::token);
    CHECK(t.word_base() == 4);
    CHECK(t.vocab_size() == 4 + int(want.size()));
    CHECK(t.word_id("a") == 4);
    CHECK(t.word_id("t-shirt") == 4 + 13);
    CHECK(t.word_id("zebra") == -1);

    const std::vector<std::string> caps{"b a", "a c", "c a", "d"};
    CHECK(Tokenizer::learn(caps, 2).words() == std::vector<std::string>{"a", "c"});
    CHECK(Tokenizer::learn(caps, 10, 2).words() == std::vector<std::string>{"a", "c"});
    CHECK(Tokenizer::learn(caps, 10).words() == std::vector<std::string>{"a", "c", "b", "d"});
    CHECK(Tokenizer::learn(std::vector<std::string>{}, 10).vocab_size() == 4);
}

TEST_CASE("Tokenizer: unknown words are one <unk> each in the learned layout") {
    const Tokenizer& t = learned();
    const auto unk = Tokenizer::unk_id;
    CHECK(t.tokens("A photo of a zebra") ==
          Ids{t.word_id("a"), t.word_id("photo"), t.word_id("of"), t.word_id("a"), unk});
    // Punctuation is a word of its own: ':' was learned, ',' and '!' were not.
    CHECK(t.tokens("drink: apple, bag!") ==
          Ids{t.word_id("drink"), t.word_id(":"), t.word_id("apple"), unk, t.word_id("bag"), unk});
    // Hyphenated unknowns fall back to their parts; the hyphen itself was never learned.
    CHECK(t.tokens("red-apple") == Ids{t.word_id("red"), unk, t.word_id("apple")});
    CHECK(t.tokens("T-SHIRT") == Ids{t.word_id("t-shirt")});
    // UTF-8 stays inside words: "piñata" is one unknown word, not six tokens.
    CHECK(t.tokens("pi\xc3\xb1"
                   "ata bag") == Ids{unk, t.word_id("bag")});
    CHECK(t.unknown_count("a photo of a zebra, seen from the front") == 6);
    CHECK(t.decode(t.tokens("drink: a zebra")) == "drink: a <unk>");
}

TEST_CASE("Tokenizer: a UTF-8 word can be learned") {
    const Tokenizer t = Tokenizer::learn(std::vector<std::string>{"pi\xc3\xb1"
                                                                  "ata"},
                                         10);
    REQUIRE(t.words().size() == 1);
    CHECK(t.tokens("PI\xc3\xb1"
                   "ATA") == Ids{t.word_base()});
}

TEST_CASE("Tokenizer: the first shipped model's layout keeps its ids and byte fallback") {
    const Tokenizer& t = legacy();
    const auto W = [&](std::string_view w) { return t.word_id(w); };
    const auto B = [](unsigned char b) { return Tokenizer::byte_id(b); };
    CHECK(t.word_base() == 259);
    CHECK(t.vocab_size() == 332);
    CHECK(W("a") == 259);
    CHECK(W("style") == 331);
    CHECK(t.tokens("T-shirt/top.") == Ids{W("t-shirt"), B('/'), W("top"), B('.')});
    CHECK(t.tokens("boot,bag!") == Ids{W("boot"), B(','), W("bag"), B('!')});
    CHECK(t.tokens("dark-gray") == Ids{W("dark"), B('-'), W("gray")});
    CHECK(t.tokens("-boot-") == Ids{B('-'), W("boot"), B('-')});
    CHECK(t.tokens("Red bag") == Ids{B('r'), B('e'), B('d'), W("bag")});
    CHECK(t.tokens("a  bag") == t.tokens("a\tbag\n"));
    CHECK(t.decode(t.tokens("a red T-shirt/top.")) == "a red t-shirt/top.");
    const std::string nul("a\0bag\0", 6);
    CHECK(t.tokens(nul) == Ids{W("a"), B(0), W("bag"), B(0)});
    for (int b = 0; b < 256; ++b) {  // each byte on its own: whitespace vanishes, every other byte is one token
        const auto ids = t.tokens(std::string(1, char(b)));
        if (b == ' ' || (b >= 9 && b <= 13)) {
            CHECK(ids.empty());
            continue;
        }
        REQUIRE(ids.size() == 1);
        const unsigned char lowered = (b >= 'A' && b <= 'Z') ? (unsigned char)(b + 32) : (unsigned char)b;
        CHECK(ids[0] == (lowered == 'a' ? W("a") : B(lowered)));
    }
    CHECK(t.token_text(B(0)) == "<0x00>");
    CHECK(t.token_text(B('x')) == "x");
    CHECK(t.token_text(W("sandal")) == "sandal");
}

TEST_CASE("Tokenizer: empty and blank strings give start, end and padding") {
    for (const Tokenizer* tok : {&learned(), &legacy()})
        for (const char* s : {"", " ", " \t\n\r\v\f "}) {
            const auto e = tok->encode<8>(s);
            check_well_formed(*tok, e);
            CHECK(ids_of(e) == Ids{Tokenizer::start_id, Tokenizer::end_id});
            CHECK_FALSE(e.truncated);
        }
    CHECK(learned().encode<2>("").length == 2);
}

TEST_CASE("Tokenizer: every byte value, invalid UTF-8 and NUL are well-formed in both layouts") {
    std::string all;
    for (int b = 0; b < 256; ++b) all += char(b);
    const std::string invalid = "\xff\xfe\xc3(\xa0\xe2\x28\xa1 bag \xf0\x90\x28";
    for (const Tokenizer* tok : {&learned(), &legacy()}) {
        check_well_formed(*tok, tok->encode<300>(all));
        check_well_formed(*tok, tok->encode<300>(std::string(all.rbegin(), all.rend())));
        check_well_formed(*tok, tok->encode<32>(invalid));
        const auto cut = tok->encode<4>(all);
        check_well_formed(*tok, cut);
        CHECK(cut.truncated);
        CHECK(tok->encode<32>(std::string(1000, 'x')).length <= 32);  // a run longer than any word
    }
}

TEST_CASE("Tokenizer: long prompts are truncated with the end token kept") {
    const Tokenizer& tok = learned();
    const auto W = [&](std::string_view w) { return tok.word_id(w); };
    std::string long_prompt;
    for (int i = 0; i < 100000; ++i) long_prompt += "a photo of a bag ";
    const auto e = tok.encode<10>(long_prompt);
    check_well_formed(tok, e);
    CHECK(e.truncated);
    CHECK(ids_of(e) == Ids{Tokenizer::start_id, W("a"), W("photo"), W("of"), W("a"), W("bag"), W("a"), W("photo"),
                           W("of"), Tokenizer::end_id});
    CHECK_FALSE(tok.encode<5>("a photo of").truncated);
    CHECK(tok.encode<5>("a photo of a").truncated);
    CHECK(tok.encode<2>("bag").truncated);
    CHECK_FALSE(tok.encode<5>("a photo of   ").truncated);  // trailing whitespace is not a lost token
}

TEST_CASE("Tokenizer: batches match single prompts") {
    const Tokenizer& tok = learned();
    const std::vector<std::string> prompts{"a bag", "A black and white picture of a Sneaker.", "",
                                           "a photo of a photo of a photo of a photo of a bag"};
    diffuse::Tensor<std::int32_t, 4, 12> ids;
    diffuse::Tensor<bool, 4, 12> mask;
    ids.fill(-7);
    CHECK(tok.encode_batch<4, 12>(prompts, ids.view(), mask.view()) == 1);
    for (int i = 0; i < 4; ++i) {
        const auto e = tok.encode<12>(prompts[std::size_t(i)]);
        for (int k = 0; k < 12; ++k) {
            CHECK(ids(i, k) == e.ids[std::size_t(k)]);
            CHECK(mask(i, k) == e.pad_mask[std::size_t(k)]);
        }
    }
    CHECK_THROWS_AS((tok.encode_batch<3, 12>(prompts, diffuse::View<std::int32_t, 3, 12>(ids.data()),
                                             diffuse::View<bool, 3, 12>(mask.data()))),
                    std::invalid_argument);
}

TEST_CASE("Tokenizer: the vocabulary round-trips through its string form, and bad ones are refused") {
    for (const Tokenizer* tok : {&learned(), &legacy()}) {
        const Tokenizer back = Tokenizer::from_string(tok->to_string());
        CHECK(back == *tok);
        CHECK(back.tokens("a photo of a zebra: bag") == tok->tokens("a photo of a zebra: bag"));
    }
    CHECK(Tokenizer::from_string("words+unk").vocab_size() == 4);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string("bpe a b"), doctest::Contains("layout"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string(""), doctest::Contains("layout"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string("words+unk a  b"), doctest::Contains("empty word"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string("words+unk a b a"), doctest::Contains("twice"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string("words+unk Bag"), doctest::Contains("lower-case"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(Tokenizer::from_string("words+unk a,b"), doctest::Contains("one lower-case word"),
                         std::invalid_argument);
    CHECK_THROWS_AS(Tokenizer(std::vector<std::string>{std::string(40, 'a')}, Tokenizer::Unknown::token),
                    std::invalid_argument);
}

TEST_CASE("Tokenizer: token_text names every id") {
    const Tokenizer& t = learned();
    CHECK(t.token_text(Tokenizer::pad_id) == "<pad>");
    CHECK(t.token_text(Tokenizer::start_id) == "<start>");
    CHECK(t.token_text(Tokenizer::end_id) == "<end>");
    CHECK(t.token_text(Tokenizer::unk_id) == "<unk>");
    CHECK(t.token_text(t.word_id("apple")) == "apple");
    CHECK(t.token_text(t.vocab_size()) == "<id:" + std::to_string(t.vocab_size()) + ">");
}
