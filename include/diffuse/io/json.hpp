// A small strict JSON (RFC 8259) parser and string quoting, enough for file headers such as
// safetensors'. Strict: one value, only whitespace around it, valid UTF-8, no duplicate object
// keys, no trailing commas, no comments, nesting at most 64 deep. Numbers are kept as their
// literal text, so 64-bit integers (byte offsets) lose nothing; as_u64 converts them.
#ifndef DIFFUSE_IO_JSON_HPP
#define DIFFUSE_IO_JSON_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace diffuse::io::json {

struct Value {
    enum Kind { null, boolean, number, string, array, object };
    Kind kind = null;
    bool b = false;
    std::string text;               // a string's decoded contents, or a number's literal
    std::vector<Value> items;       // array elements, or object values
    std::vector<std::string> keys;  // object keys, parallel to items, in file order

    /// An object's member, or nullptr.
    const Value* find(std::string_view key) const {
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (keys[i] == key) return &items[i];
        return nullptr;
    }
};

inline const char* kind_name(Value::Kind k) {
    static constexpr const char* names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[k];
}

/// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one (overlong forms,
/// surrogates and code points above U+10FFFF are invalid).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = at(i);
    if (c < 0x80) return 1;
    std::size_t n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07u;
    } else return 0;
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((at(i + k) & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (at(i + k) & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

inline bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/// s as a JSON string literal. s must be valid UTF-8 (throws std::invalid_argument otherwise).
inline std::string quote(std::string_view s) {
    if (!is_valid_utf8(s)) throw std::invalid_argument("json::quote: string is not valid UTF-8");
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c < 0x20 || c == 0x7F) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += ch;
    }
    return out + "\"";
}

namespace detail {

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}

    Value document() {
        skip_ws();
        Value v = value(0);
        skip_ws();
        if (i_ != s_.size()) fail("unexpected data after the JSON value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("invalid JSON at byte " + std::to_string(i_) + ": " + what);
    }
    bool eof() const { return i_ >= s_.size(); }
    char peek() const { return eof() ? '\0' : s_[i_]; }
    void skip_ws() {
        while (!eof() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    void expect(char c) {
        if (peek() != c || eof()) fail(std::string("expected '") + c + "'");
        ++i_;
    }
    void literal(std::string_view word) {
        if (s_.substr(i_, word.size()) != word) fail("unexpected character");
        i_ += word.size();
    }

    Value value(int depth) {
        if (depth > 64) fail("nesting deeper than 64");
        if (eof()) fail("unexpected end of input");
        Value v;
        switch (s_[i_]) {
            case '{':
                object(v, depth);
                break;
            case '[':
                array(v, depth);
                break;
            case '"':
                v.kind = Value::string;
                v.text = string();
                break;
            case 't':
                literal("true");
                v.kind = Value::boolean;
                v.b = true;
                break;
            case 'f':
                literal("false");
                v.kind = Value::boolean;
                break;
            case 'n':
                literal("null");
                break;
            default:
                v.kind = Value::number;
                v.text = number();
                break;
        }
        return v;
    }

    void object(Value& v, int depth) {
        v.kind = Value::object;
        ++i_;
        skip_ws();
        if (peek() == '}' && !eof()) {
            ++i_;
            return;
        }
        while (true) {
            skip_ws();
            if (peek() != '"' || eof()) fail("expected a string key");
            const std::size_t at = i_;
            std::string key = string();
            for (const auto& k : v.keys)
                if (k == key) {
                    i_ = at;
                    fail("duplicate key " + quote(key));
                }
            skip_ws();
            expect(':');
            skip_ws();
            v.keys.push_back(std::move(key));
            v.items.push_back(value(depth + 1));
            skip_ws();
            if (peek() == ',' && !eof()) {
                ++i_;
                continue;
            }
            expect('}');
            return;
        }
    }

    void array(Value& v, int depth) {
        v.kind = Value::array;
        ++i_;
        skip_ws();
        if (peek() == ']' && !eof()) {
            ++i_;
            return;
        }
        while (true) {
            skip_ws();
            v.items.push_back(value(depth + 1));
            skip_ws();
            if (peek() == ',' && !eof()) {
                ++i_;
                continue;
            }
            expect(']');
            return;
        }
    }

    std::uint32_t hex4() {
        if (i_ + 4 > s_.size()) fail("truncated \\u escape");
        std::uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= std::uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= std::uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= std::uint32_t(c - 'A' + 10);
            else fail("bad hex digit in \\u escape");
        }
        return v;
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) {
            out += char(0xC0 | cp >> 6);
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | cp >> 12);
            out += char(0x80 | (cp >> 6 & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | cp >> 18);
            out += char(0x80 | (cp >> 12 & 0x3F));
            out += char(0x80 | (cp >> 6 & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    std::string string() {
        ++i_;  // opening quote
        std::string out;
        while (true) {
            if (eof()) fail("unterminated string");
            const auto c = static_cast<unsigned char>(s_[i_]);
            if (c == '"') {
                ++i_;
                return out;
            }
            if (c < 0x20) fail("control character in a string");
            if (c == '\\') {
                ++i_;
                if (eof()) fail("unterminated string");
                const char e = s_[i_++];
                switch (e) {
                    case '"':
                        out += '"';
                        break;
                    case '\\':
                        out += '\\';
                        break;
                    case '/':
                        out += '/';
                        break;
                    case 'b':
                        out += '\b';
                        break;
                    case 'f':
                        out += '\f';
                        break;
                    case 'n':
                        out += '\n';
                        break;
                    case 'r':
                        out += '\r';
                        break;
                    case 't':
                        out += '\t';
                        break;
                    case 'u': {
                        std::uint32_t cp = hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (s_.substr(i_, 2) != "\\u") fail("lone high surrogate in \\u escape");
                            i_ += 2;
                            const std::uint32_t lo = hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad surrogate pair in \\u escape");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        }
                        append_utf8(out, cp);
                        break;
                    }
                    default:
                        --i_;
                        fail("bad escape in a string");
                }
                continue;
            }
            const std::size_t n = utf8_sequence_length(s_, i_);
            if (n == 0) fail("invalid UTF-8 in a string");
            out.append(s_.substr(i_, n));
            i_ += n;
        }
    }

    std::string number() {
        const std::size_t start = i_;
        const auto digit = [&] { return !eof() && s_[i_] >= '0' && s_[i_] <= '9'; };
        const auto digits = [&] {
            if (!digit()) fail("expected a digit");
            while (digit()) ++i_;
        };
        if (peek() == '-') ++i_;
        if (peek() == '0' && !eof()) ++i_;
        else if (digit()) digits();
        else fail("unexpected character");
        if (peek() == '.' && !eof()) {
            ++i_;
            digits();
        }
        if (peek() == 'e' || peek() == 'E') {
            ++i_;
            if (peek() == '+' || peek() == '-') ++i_;
            digits();
        }
        return std::string(s_.substr(start, i_ - start));
    }

    std::string_view s_;
    std::size_t i_ = 0;
};

}  // namespace detail

/// Parses one JSON document; throws std::runtime_error("invalid JSON at byte N: ...").
inline Value parse(std::string_view text) { return detail::Parser(text).document(); }

/// A number that is a non-negative integer literal fitting 64 bits (no sign, fraction or
/// exponent); throws std::runtime_error naming `what` otherwise.
inline std::uint64_t as_u64(const Value& v, const std::string& what) {
    if (v.kind != Value::number) throw std::runtime_error(what + " is " + kind_name(v.kind) + ", expected an integer");
    std::uint64_t r = 0;
    for (char c : v.text) {
        if (c < '0' || c > '9') throw std::runtime_error(what + " is " + v.text + ", expected a non-negative integer");
        const auto d = std::uint64_t(c - '0');
        if (r > (UINT64_MAX - d) / 10) throw std::runtime_error(what + " " + v.text + " does not fit 64 bits");
        r = r * 10 + d;
    }
    return r;
}

}  // namespace diffuse::io::json

#endif
