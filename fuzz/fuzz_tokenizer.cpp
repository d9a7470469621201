// libFuzzer target: the tokenizer (text/tokenizer.hpp). The input is a vocabulary string (as a
// weights file stores it) and a prompt, split at the first NUL byte; without a NUL, the vocabulary
// is learned from the input's lines. Encoding never fails, and a restored vocabulary round-trips.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using diffuse::text::Tokenizer;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = in.find('\0');
    std::string_view prompt = in;
    Tokenizer tok;
    if (nul != std::string_view::npos) {
        prompt = in.substr(nul + 1);
        try {
            tok = Tokenizer::from_string(in.substr(0, nul));
        } catch (const std::invalid_argument&) { return 0; }
        if (!(Tokenizer::from_string(tok.to_string()) == tok)) __builtin_trap();
    } else {
        std::vector<std::string> lines;
        for (std::size_t i = 0; i <= in.size();) {
            const std::size_t j = std::min(in.find('\n', i), in.size());
            lines.emplace_back(in.substr(i, j - i));
            i = j + 1;
        }
        tok = Tokenizer::learn(lines, 64);
    }
    const auto e = tok.encode<16>(prompt);
    if (e.length < 2 || e.length > 16 || e.ids(0) != Tokenizer::start_id || e.ids(e.length - 1) != Tokenizer::end_id)
        __builtin_trap();
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 16; ++i) {
        if (e.ids(i) < 0 || e.ids(i) >= tok.vocab_size() || e.pad_mask(i) != (i >= e.length)) __builtin_trap();
        ids.push_back(e.ids(i));
    }
    (void)tok.decode(ids);
    return 0;
}
