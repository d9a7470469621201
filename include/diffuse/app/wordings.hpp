// Prompt wordings to score a text-to-image model with: caption templates, one per line of a text
// file, where "{a}" stands for the class name with its article ("an ankle boot") and "{n}" for the
// bare name (data::format_caption fills them; class_prompt(label, wording) gives the prompt).
// Blank lines and lines whose first non-blank character is '#' are skipped; surrounding blanks are
// trimmed. A wording without a placeholder would prompt every class alike, so it is an error.
#ifndef DIFFUSE_APP_WORDINGS_HPP
#define DIFFUSE_APP_WORDINGS_HPP

#include <cstddef>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace diffuse::app {

/// Whether a wording names the class: holds "{a}" or "{n}".
inline bool names_the_class(std::string_view wording) {
    return wording.find("{a}") != std::string_view::npos || wording.find("{n}") != std::string_view::npos;
}

/// The wordings in `text`, in order. `source` names it in errors (a file name). Throws
/// std::invalid_argument for a wording with neither placeholder (naming its line) and for a text
/// with no wording at all.
inline std::vector<std::string> parse_wordings(std::string_view text, const std::string& source = "wordings") {
    std::vector<std::string> out;
    int line_no = 0;
    for (std::size_t begin = 0; begin <= text.size();) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(begin, end - begin);
        begin = end + 1;
        ++line_no;
        const std::size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string_view::npos || line[first] == '#') continue;
        line = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
        if (!names_the_class(line))
            throw std::invalid_argument(source + ":" + std::to_string(line_no) + ": the wording '" + std::string(line) +
                                        "' has neither {a} nor {n}, so it would not name the class");
        out.emplace_back(line);
    }
    if (out.empty()) throw std::invalid_argument(source + ": no wordings (only blank or '#' lines)");
    return out;
}

/// The wordings of a file (parse_wordings); throws std::runtime_error when it cannot be read.
inline std::vector<std::string> read_wordings(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read the wordings file '" + path + "'");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw std::runtime_error("error reading the wordings file '" + path + "'");
    return parse_wordings(text.str(), path);
}

}  // namespace diffuse::app

#endif
