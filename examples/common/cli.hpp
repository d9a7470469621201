// A tiny command-line parser shared by the example programs: typed --flags with defaults,
// --help, and a clear error (exit status 2) for an unknown flag, a missing value or a bad number.
#ifndef DIFFUSE_EXAMPLES_CLI_HPP
#define DIFFUSE_EXAMPLES_CLI_HPP

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

class Parser {
public:
    Parser(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

    Parser& option(std::string name, std::string& target, std::string help) {
        return add(std::move(name), "TEXT", std::move(help), "\"" + target + "\"", [&target](std::string_view v) {
            target = std::string(v);
            return std::string();
        });
    }
    Parser& option(std::string name, int& target, std::string help) {
        return number(std::move(name), target, std::move(help));
    }
    Parser& option(std::string name, long long& target, std::string help) {
        return number(std::move(name), target, std::move(help));
    }
    /// A real number; NaN and infinities are refused ("--guidance: 'nan' is not a finite number"),
    /// so a program's range checks only ever see finite values.
    Parser& option(std::string name, double& target, std::string help) {
        return add(std::move(name), "X", std::move(help), std::to_string(target), [&target](std::string_view v) {
            char* end = nullptr;
            const std::string s(v);
            const double d = std::strtod(s.c_str(), &end);
            if (s.empty() || *end != '\0') return std::string("is not a number");
            if (!std::isfinite(d)) return std::string("is not a finite number");
            target = d;
            return std::string();
        });
    }
    Parser& flag(std::string name, bool& target, std::string help) {
        flags_.push_back({std::move(name), std::move(help), &target});
        return *this;
    }
    /// Collects the arguments that are not flags (e.g. input files) into target; without this,
    /// any such argument is an error.
    Parser& positional(std::string metavar, std::vector<std::string>& target, std::string help) {
        positional_ = &target;
        positional_metavar_ = std::move(metavar);
        positional_help_ = std::move(help);
        return *this;
    }

    /// Parses argv; prints help and exits 0 for --help, prints the problem and exits 2 on bad input.
    void parse(int argc, char** argv) const {
        for (int i = 1; i < argc; ++i) {
            const std::string_view arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                print_help(stdout);
                std::exit(0);
            }
            bool known = false;
            for (const auto& f : flags_)
                if (arg == f.name) {
                    *f.target = true;
                    known = true;
                }
            for (const auto& o : options_) {
                if (arg != o.name) continue;
                known = true;
                if (i + 1 >= argc) fail(o.name + " needs a value (" + o.metavar + ")");
                if (const std::string problem = o.set(argv[++i]); !problem.empty())
                    fail(o.name + ": '" + argv[i] + "' " + problem);
            }
            if (!known && positional_ && !arg.starts_with("-")) {
                positional_->emplace_back(arg);
                known = true;
            }
            if (!known) fail("unknown argument '" + std::string(arg) + "'");
        }
    }

    [[noreturn]] void fail(const std::string& what) const {
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", program_.c_str(), what.c_str(),
                     program_.c_str());
        std::exit(2);
    }

private:
    struct Option {
        std::string name, metavar, help, default_text;
        std::function<std::string(std::string_view)> set;  // "" or what is wrong with the value
    };
    struct Flag {
        std::string name, help;
        bool* target;
    };

    template <class I>
    Parser& number(std::string name, I& target, std::string help) {
        return add(std::move(name), "N", std::move(help), std::to_string(target), [&target](std::string_view v) {
            I x{};
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
            if (ec == std::errc::result_out_of_range) return std::string("is out of range");
            if (ec != std::errc() || p != v.data() + v.size()) return std::string("is not a whole number");
            target = x;
            return std::string();
        });
    }
    Parser& add(std::string name, std::string metavar, std::string help, std::string def,
                std::function<std::string(std::string_view)> set) {
        options_.push_back({std::move(name), std::move(metavar), std::move(help), std::move(def), std::move(set)});
        return *this;
    }
    void print_help(FILE* out) const {
        std::fprintf(out, "%s — %s\n\nOptions:\n", program_.c_str(), summary_.c_str());
        for (const auto& o : options_)
            std::fprintf(out, "  %-14s %-5s %s (default %s)\n", o.name.c_str(), o.metavar.c_str(), o.help.c_str(),
                         o.default_text.c_str());
        for (const auto& f : flags_) std::fprintf(out, "  %-20s %s\n", f.name.c_str(), f.help.c_str());
        std::fprintf(out, "  %-20s %s\n", "--help", "this text");
        if (positional_)
            std::fprintf(out, "  %-20s %s\n", (positional_metavar_ + "...").c_str(), positional_help_.c_str());
    }

    std::string program_, summary_;
    std::vector<Option> options_;
    std::vector<Flag> flags_;
    std::vector<std::string>* positional_ = nullptr;
    std::string positional_metavar_, positional_help_;
};

}  // namespace cli

#endif
