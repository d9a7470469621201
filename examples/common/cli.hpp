// The command-line parser of the example programs, on CLI11 (Debian's libcli11-dev, header-only):
// typed --flags with defaults written as a person writes them, --help, --version, and one line
// naming the flag for every bad input (exit status 2): an unknown flag, a missing value, a value
// that is not a whole number, or a real number that is not finite ("--guidance: 'nan' is not a
// finite number"), so a program's own range checks only ever see finite values.
//
// CLI11 rather than cxxopts: it checks values through validators that run before a value is
// stored, and its errors name the option; the programs keep this small interface over it.
#ifndef DIFFUSE_EXAMPLES_CLI_HPP
#define DIFFUSE_EXAMPLES_CLI_HPP

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "diffuse/version.hpp"

namespace cli {

/// "3", "0.0003", "1e-08": the shortest form that reads back as the same double, as %g writes it.
inline std::string number_text(double x) {
    char buf[32];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::general);
    return ec == std::errc() ? std::string(buf, end) : std::to_string(x);
}

/// The problem with `text` as a whole number of type I, or "" when it is one.
template <class I>
std::string whole_number_problem(std::string_view text) {
    I x{};
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
    if (ec == std::errc::result_out_of_range) return "'" + std::string(text) + "' is out of range";
    if (ec != std::errc() || p != text.data() + text.size()) return "'" + std::string(text) + "' is not a whole number";
    return {};
}

/// The problem with `text` as a finite real number, or "" when it is one.
inline std::string finite_number_problem(const std::string& text) {
    char* end = nullptr;
    const double d = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') return "'" + text + "' is not a number";
    if (!std::isfinite(d)) return "'" + text + "' is not a finite number";
    return {};
}

/// "diffuse 0.1.0", from include/diffuse/version.hpp.
inline std::string version_text() {
    return "diffuse " + std::to_string(DIFFUSE_VERSION_MAJOR) + "." + std::to_string(DIFFUSE_VERSION_MINOR) + "." +
           std::to_string(DIFFUSE_VERSION_PATCH);
}

/// CLI11's help with the program's own usage line ("Usage: txt2img --prompt TEXT ...") in place of
/// its generic "Usage: txt2img [OPTIONS]".
class HelpFormatter : public CLI::Formatter {
public:
    explicit HelpFormatter(std::string usage) : usage_(std::move(usage)) {}
    std::string make_usage(const CLI::App* app, std::string name) const override {
        return usage_.empty() ? CLI::Formatter::make_usage(app, std::move(name)) : usage_ + "\n";
    }

private:
    std::string usage_;
};

class Parser {
public:
    /// summary: what the program does; a line of it that starts with "Usage: " becomes the usage line.
    Parser(std::string program, std::string summary) : program_(program), app_("", program) {
        std::string usage;
        if (const auto at = summary.find("Usage: "); at != std::string::npos) {
            const auto end = summary.find('\n', at);
            usage = summary.substr(at, end == std::string::npos ? std::string::npos : end - at);
            summary.erase(at, end == std::string::npos ? std::string::npos : end - at + 1);
            while (!summary.empty() && summary.back() == '\n') summary.pop_back();
        }
        app_.description(program + " — " + summary);
        auto formatter = std::make_shared<HelpFormatter>(usage);
        formatter->column_width(26);
        app_.formatter(formatter);
        app_.set_help_flag("-h,--help", "print this help and exit");
        app_.set_version_flag("--version", version_text(), "print the library version and exit");
    }

    Parser& option(std::string name, std::string& target, std::string help) {
        if (!target.empty()) help += " (default: " + target + ")";
        app_.add_option(name, target, help)->type_name("TEXT");
        return *this;
    }
    Parser& option(std::string name, int& target, std::string help) { return whole(name, target, help); }
    Parser& option(std::string name, long long& target, std::string help) { return whole(name, target, help); }
    Parser& option(std::string name, double& target, std::string help) {
        app_.add_option(name, target, help + " (default: " + number_text(target) + ")")
            ->type_name("X")
            ->check(CLI::Validator([](std::string& v) { return finite_number_problem(v); }, "", "finite"));
        return *this;
    }
    Parser& flag(std::string name, bool& target, std::string help) {
        app_.add_flag(name, target, help);
        return *this;
    }
    /// Collects the arguments that are not flags (e.g. input files) into target; without this,
    /// any such argument is an error.
    Parser& positional(std::string metavar, std::vector<std::string>& target, std::string help) {
        app_.add_option("inputs", target, help)->type_name(metavar + "...");
        return *this;
    }

    /// Parses argv; prints help (or the version) and exits 0 for --help (--version), prints the
    /// problem and exits 2 on bad input.
    void parse(int argc, char** argv) {
        try {
            app_.parse(argc, argv);
        } catch (const CLI::CallForHelp&) {
            std::fputs(app_.help().c_str(), stdout);
            std::exit(0);
        } catch (const CLI::CallForVersion& v) {
            std::printf("%s\n", v.what());
            std::exit(0);
        } catch (const CLI::ParseError& e) { fail(e.what()); }
    }

    [[noreturn]] void fail(const std::string& what) const {
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", program_.c_str(), what.c_str(),
                     program_.c_str());
        std::exit(2);
    }

private:
    template <class I>
    Parser& whole(const std::string& name, I& target, const std::string& help) {
        app_.add_option(name, target, help + " (default: " + std::to_string(target) + ")")
            ->type_name("N")
            ->check(CLI::Validator([](std::string& v) { return whole_number_problem<I>(v); }, "", "whole"));
        return *this;
    }

    std::string program_;
    CLI::App app_;
};

}  // namespace cli

#endif
