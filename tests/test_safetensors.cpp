#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/io/safetensors.hpp"

#include "file_test_util.hpp"
#include "test_skip.hpp"

using namespace diffuse;
using namespace diffuse::io;
namespace fs = std::filesystem;
using namespace test_files;

namespace {

// A safetensors file from a header text and a data section, as a corrupt-file factory.
std::string st_bytes(const std::string& header, const std::string& data, std::uint64_t len = UINT64_MAX) {
    if (len == UINT64_MAX) len = header.size();
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[std::size_t(i)] = char(len >> (8 * i));
    return b + header + data;
}

// A small model: nested names, several shapes.
template <class T>
struct Block {
    Param<T, 3, 4> weight{Init::Normal(1.0)};
    Param<T, 3> bias{Init::Uniform(0.5)};
    template <class V>
    constexpr void visit(V& v) {
        v("weight", weight);
        v("bias", bias);
    }
};
template <class T>
struct Model {
    Block<T> first, second;
    Param<T, 2, 2, 5> table{Init::Normal(0.1)};
    template <class V>
    constexpr void visit(V& v) {
        v("blocks", 0, first);
        v("blocks", 1, second);
        v("table", table);
    }
};
// The same names with one shape changed.
struct Reshaped {
    Block<float> first;
    Block<float> second;
    Param<float, 2, 5, 2> table;
    template <class V>
    constexpr void visit(V& v) {
        v("blocks", 0, first);
        v("blocks", 1, second);
        v("table", table);
    }
};

template <class T>
std::vector<T> values_of(const ParamStore<T>& s) {
    std::vector<T> v;
    for (const auto& i : s.infos()) v.insert(v.end(), s.values() + i.offset, s.values() + i.offset + i.size);
    return v;
}

const fs::path kChecker =
    fs::path(DIFFUSE_TEST_DATA_DIR).parent_path().parent_path() / "tools" / "check_safetensors.py";

// Runs the Python checker; returns its exit status and output.
int run_checker(const std::string& args, std::string& output) {
    const std::string cmd = "/usr/bin/python3 " + kChecker.string() + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    output.clear();
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

// ---- half and bfloat16 --------------------------------------------------------------------------

TEST_CASE("F16: every half value survives half -> float -> half") {
    int nans = 0;
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = half_to_float(std::uint16_t(h));
        const bool nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF) != 0;
        if (nan) {
            CHECK(std::isnan(f));
            CHECK(std::isnan(half_to_float(float_to_half(f))));
            ++nans;
        } else {
            REQUIRE(float_to_half(f) == h);
        }
    }
    CHECK(nans == 2 * 1023);
}

TEST_CASE("F16 and BF16: rounding to nearest, ties to even, overflow and subnormals") {
    CHECK(float_to_half(1.0f) == 0x3C00);
    CHECK(float_to_half(1.0f + 0x1p-11f) == 0x3C00);      // tie -> even
    CHECK(float_to_half(1.0f + 3 * 0x1p-11f) == 0x3C02);  // tie -> even (up)
    CHECK(float_to_half(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01);
    CHECK(float_to_half(65504.0f) == 0x7BFF);
    CHECK(float_to_half(65519.0f) == 0x7BFF);
    CHECK(float_to_half(65520.0f) == 0x7C00);  // rounds past the largest half
    CHECK(float_to_half(-1e30f) == 0xFC00);
    CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
    CHECK(float_to_half(0x1p-24f) == 0x0001);  // smallest subnormal
    CHECK(float_to_half(0x1p-25f) == 0x0000);  // tie -> even (zero)
    CHECK(float_to_half(1.5f * 0x1p-25f) == 0x0001);
    CHECK(float_to_half(0x1p-14f - 0x1p-26f) == 0x0400);  // rounds up into the normals
    CHECK(float_to_half(-0.0f) == 0x8000);
    CHECK(float_to_half(0.1f) == 0x2E66);
    CHECK(double(half_to_float(0x3555)) == 0.333251953125);

    CHECK(float_to_bf16(1.0f) == 0x3F80);
    CHECK(float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);  // tie -> even
    CHECK(float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);
    CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // overflow -> inf
    CHECK(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));  // NaN that would round to inf
    for (std::uint32_t b = 0; b < 65536; ++b) {
        const float f = bf16_to_float(std::uint16_t(b));
        if (!std::isnan(f)) REQUIRE(float_to_bf16(f) == b);
    }
}

// ---- JSON ---------------------------------------------------------------------------------------

TEST_CASE("JSON: the strict parser accepts valid documents") {
    const auto v = json::parse(
        R"( {"a": [1, -2.5e3, 0, true, false, null], "b": {"c": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}, "n": 18446744073709551615} )");
    REQUIRE(v.kind == json::Value::object);
    REQUIRE(v.find("a"));
    CHECK(v.find("a")->items.size() == 6);
    CHECK(v.find("a")->items[1].text == "-2.5e3");
    CHECK(v.find("b")->find("c")->text == "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(json::as_u64(*v.find("n"), "n") == UINT64_MAX);
    CHECK(json::parse("[]").items.empty());
    CHECK(json::parse("{}").keys.empty());
    CHECK(json::parse("\"\xe2\x82\xac\"").text == "\xe2\x82\xac");
    // quote() output parses back to the same string.
    const std::string tricky = std::string("a\"b\\c\n\x01\x7f\xc3\xa9", 10);
    CHECK(json::parse(json::quote(tricky)).text == tricky);
}

TEST_CASE("JSON: the strict parser rejects what RFC 8259 does not allow") {
    for (const char* bad : {"",
                            "{",
                            "[1,]",
                            "{\"a\":1,}",
                            "{\"a\":1 \"b\":2}",
                            "{\"a\":1,\"a\":2}",
                            "{a:1}",
                            "01",
                            "1.",
                            ".5",
                            "-",
                            "1e",
                            "+1",
                            "tru",
                            "nul",
                            "\"\\x\"",
                            "\"\\ud800\"",
                            "\"\\udc00\"",
                            "\"\\ud800\\u0041\"",
                            "\"\\u12g4\"",
                            "\"abc",
                            "\"a\nb\"",
                            "\"\xff\"",
                            "\"\xc0\xaf\"",
                            "\"\xed\xa0\x80\"",
                            "{} x",
                            "[1] [2]",
                            "// c\n{}",
                            "'a'",
                            "NaN"}) {
        const auto e = error_of([&] { json::parse(bad); });
        CHECK_MESSAGE(contains(e, "invalid JSON at byte"), "input: ", bad);
    }
    CHECK(contains(error_of([] { json::parse(std::string(100, '[') + std::string(100, ']')); }),
                   "nesting deeper than 64"));
    CHECK(contains(error_of([] { json::parse("{\"a\":1,\"a\":2}"); }), "duplicate key \"a\""));
    CHECK(contains(error_of([] { json::as_u64(json::parse("-1"), "x"); }), "x is -1, expected a non-negative integer"));
    CHECK(contains(error_of([] { json::as_u64(json::parse("18446744073709551616"), "x"); }), "does not fit 64 bits"));
    CHECK(contains(error_of([] { json::as_u64(json::parse("1.0"), "x"); }), "expected a non-negative integer"));
    CHECK_THROWS_AS(json::quote("\xff"), std::invalid_argument);
}

// ---- writing and reading ------------------------------------------------------------------------

TEST_CASE("safetensors: tensors of every float dtype, integers and metadata round trip") {
    TempDir t;
    const std::vector<float> f{0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f, 1e-8f, 0.1f};
    const std::vector<double> d{0.1, -2.0, 1e300, 1e-300};
    const std::vector<std::int64_t> step{12345678901234LL};
    const std::vector<std::uint8_t> bytes{0, 1, 255};
    SafetensorsWriter w;
    w.add("f32", {2, 4}, f.data());
    w.add("f16", {8}, f.data(), DType::F16);
    w.add("bf16", {4, 2}, f.data(), DType::BF16);
    w.add("f64", {4}, d.data());
    w.add("f64_as_f32", {2, 2}, d.data(), DType::F32);
    w.add("step", {}, step.data());
    w.add("bytes", {3}, bytes.data());
    w.add("empty", {0, 3}, static_cast<const float*>(nullptr));
    w.set_metadata("format", "pt");
    w.set_metadata("prompt", "a photo of a \"bag\"\n\xc3\xa9");
    const std::string path = t.file("all.safetensors");
    w.save(path);

    const std::string raw = read_file(path);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(raw[std::size_t(i)]);
    CHECK(n % 8 == 0);  // the header is padded for aligned data, as the reference writer does
    CHECK(raw.substr(8, 15) == "{\"__metadata__\"");

    SafetensorsFile r(path);
    CHECK(r.tensors().size() == 8);
    CHECK(r.metadata().at("format") == "pt");
    CHECK(r.metadata().at("prompt") == "a photo of a \"bag\"\n\xc3\xa9");
    CHECK(r.at("f32").shape == std::vector<std::int64_t>{2, 4});
    CHECK(r.at("step").shape.empty());
    CHECK(r.at("empty").numel == 0);
    CHECK(r.read<float>("f32") == f);
    const auto f16 = r.read<float>("f16");
    const auto bf16 = r.read<double>("bf16");
    for (std::size_t i = 0; i < f.size(); ++i) {
        CHECK(f16[i] == half_to_float(float_to_half(f[i])));
        CHECK(bf16[i] == double(bf16_to_float(float_to_bf16(f[i]))));
        CHECK(std::abs(double(bf16[i]) - f[i]) <= std::abs(f[i]) * 0x1p-8);
    }
    CHECK(r.read<double>("f64") == d);
    CHECK(r.read<float>("f64") == std::vector<float>{0.1f, -2.0f, std::numeric_limits<float>::infinity(), 0.0f});
    CHECK(r.read<double>("f64_as_f32") ==
          std::vector<double>{double(0.1f), -2.0, double(float(1e300)), double(float(1e-300))});
    CHECK(r.read<std::int64_t>("step") == step);
    CHECK(r.read<std::uint8_t>("bytes") == bytes);
    CHECK(r.read_raw("f16").size() == 16);
    CHECK(r.read<float>("empty").empty());

    CHECK(contains(error_of([&] { r.read<float>("step"); }),
                   "tensor 'step' has dtype I64, which does not convert to floating point"));
    CHECK(contains(error_of([&] { r.read<std::int32_t>("step"); }), "has dtype I64, the caller expects I32"));
    CHECK(contains(error_of([&] {
                       std::vector<float> x(3);
                       r.read("f32", x.data(), 3);
                   }),
                   "has 8 elements, the caller expects 3"));
    CHECK(contains(error_of([&] { r.at("nothing"); }), "no tensor named 'nothing'"));
}

TEST_CASE("safetensors: the writer refuses bad input before touching the disk") {
    const std::vector<float> f(4);
    const std::vector<std::int32_t> i(4);
    SafetensorsWriter w;
    w.add("x", {4}, f.data());
    CHECK_THROWS_AS(w.add("x", {4}, f.data()), std::invalid_argument);
    CHECK_THROWS_AS(w.add("", {4}, f.data()), std::invalid_argument);
    CHECK_THROWS_AS(w.add("__metadata__", {4}, f.data()), std::invalid_argument);
    CHECK_THROWS_AS(w.add("\xff", {4}, f.data()), std::invalid_argument);
    CHECK_THROWS_AS(w.add("neg", {-1}, f.data()), std::runtime_error);
    CHECK_THROWS_AS(w.add("as_int", {4}, f.data(), DType::I32), std::invalid_argument);
    CHECK_THROWS_AS(w.add("int_as_float", {4}, i.data(), DType::F32), std::invalid_argument);
    CHECK_THROWS_AS(w.add("null", {4}, static_cast<const float*>(nullptr)), std::invalid_argument);
    CHECK_THROWS_AS(w.set_metadata("k", "\xc0"), std::invalid_argument);
}

TEST_CASE("safetensors: a parameter store saves and loads by state-dict name") {
    TempDir t;
    Model<float> a, b;
    ParamStore<float> sa(a, 1), sb(b, 2);
    REQUIRE(values_of(sa) != values_of(sb));
    save_params(sa, t.file("m.safetensors"), DType::F32, {{"epoch", "3"}});
    SafetensorsFile f(t.file("m.safetensors"));
    CHECK(f.at("blocks.1.weight").shape == std::vector<std::int64_t>{3, 4});
    CHECK(f.at("table").shape == std::vector<std::int64_t>{2, 2, 5});
    CHECK(f.metadata().at("epoch") == "3");
    load_params(sb, f);
    CHECK(values_of(sb) == values_of(sa));

    // Into double, through F16 and BF16 (within their precision), and from double back to float.
    Model<double> c;
    ParamStore<double> sc(c, 3);
    load_params(sc, t.file("m.safetensors"));
    const auto va = values_of(sa);
    const auto vc = values_of(sc);
    for (std::size_t i = 0; i < va.size(); ++i) CHECK(vc[i] == double(va[i]));
    save_params(sa, t.file("h.safetensors"), DType::F16);
    save_params(sa, t.file("b.safetensors"), DType::BF16);
    ParamStore<double> sh(c, 4);
    load_params(sh, t.file("h.safetensors"));
    for (std::size_t i = 0; i < va.size(); ++i)
        CHECK(std::abs(values_of(sh)[i] - va[i]) <= std::abs(va[i]) * 0x1p-11 + 0x1p-24);
    load_params(sh, t.file("b.safetensors"));
    for (std::size_t i = 0; i < va.size(); ++i) CHECK(std::abs(values_of(sh)[i] - va[i]) <= std::abs(va[i]) * 0x1p-8);
    save_params(sc, t.file("d.safetensors"));
    CHECK(SafetensorsFile(t.file("d.safetensors")).at("table").dtype == DType::F64);
    ParamStore<float> sd(b, 5);
    load_params(sd, t.file("d.safetensors"));
    CHECK(values_of(sd) == va);
}

TEST_CASE("safetensors: loading names the tensor that is missing, misshapen or unexpected") {
    TempDir t;
    Model<float> m;
    ParamStore<float> store(m, 1);
    const auto before = values_of(store);
    const std::vector<float> zeros(64, 0.0f);
    const std::vector<std::int64_t> step{7};

    auto write = [&](auto&& edit) {
        SafetensorsWriter w;
        edit(w);
        w.save(t.file("x.safetensors"));
        return t.file("x.safetensors");
    };
    auto all_but = [&](SafetensorsWriter& w, const std::string& skip) {
        for (const auto& i : store.infos())
            if (i.name != skip) w.add(i.name, std::vector<std::int64_t>(i.dims.begin(), i.dims.end()), zeros.data());
    };

    SUBCASE("missing") {
        const auto p = write([&](auto& w) { all_but(w, "blocks.1.bias"); });
        CHECK(contains(error_of([&] { load_params(store, p); }),
                       "missing tensor 'blocks.1.bias' (the model expects [3])"));
        CHECK(values_of(store) == before);  // a failed load writes nothing
    }
    SUBCASE("shape mismatch") {
        const auto p = write([&](auto& w) {
            all_but(w, "table");
            w.add("table", {2, 5, 2}, zeros.data());
        });
        CHECK(contains(error_of([&] { load_params(store, p); }),
                       "tensor 'table' has shape [2, 5, 2], the model expects [2, 2, 5]"));
        CHECK(values_of(store) == before);
        Reshaped r;
        ParamStore<float> rs(r);
        load_params(rs, p);  // the model it fits loads it
    }
    SUBCASE("integer dtype") {
        const std::vector<std::int32_t> iz(64, 0);
        const auto p = write([&](auto& w) {
            all_but(w, "blocks.0.bias");
            w.add("blocks.0.bias", {3}, iz.data());
        });
        CHECK(contains(error_of([&] { load_params(store, p); }), "tensor 'blocks.0.bias' has dtype I32"));
    }
    SUBCASE("unexpected extra tensor, and the options that allow it") {
        const auto p = write([&](auto& w) {
            all_but(w, "");
            w.add("optimizer.step", {1}, step.data());
            w.add("optimizer.m", {64}, zeros.data());
        });
        CHECK(contains(error_of([&] { load_params(store, p); }), "unexpected tensor 'optimizer."));
        CHECK(values_of(store) == before);
        LoadOptions opt;
        opt.ignore_prefixes = {"optimizer."};
        load_params(store, p, opt);
        CHECK(values_of(store) == std::vector<float>(before.size(), 0.0f));
        LoadOptions any;
        any.allow_extra = true;
        load_params(store, p, any);
        // The extra blobs are there for whoever owns them (an optimizer's state).
        SafetensorsFile f(p);
        CHECK(f.read<std::int64_t>("optimizer.step") == step);
        CHECK(f.read<float>("optimizer.m") == zeros);
    }
    SUBCASE("prefix") {
        const auto p = write([&](auto& w) {
            for (const auto& i : store.infos())
                w.add("vae." + i.name, std::vector<std::int64_t>(i.dims.begin(), i.dims.end()), zeros.data());
        });
        LoadOptions opt;
        opt.prefix = "vae.";
        load_params(store, p, opt);
        CHECK(values_of(store) == std::vector<float>(before.size(), 0.0f));
    }
}

TEST_CASE("safetensors: corrupt files give errors that name the file and the problem") {
    TempDir t;
    const std::string p = t.file("bad.safetensors");
    const std::string good = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string data8(8, '\x11');
    auto err = [&](const std::string& bytes) {
        write_file(p, bytes);
        return error_of([&] { SafetensorsFile f(p); });
    };
    CHECK(err(st_bytes(good, data8)).empty());  // the baseline is valid

    const auto e_missing = error_of([&] { SafetensorsFile f(t.file("none.safetensors")); });
    CHECK(contains(e_missing, "none.safetensors"));
    CHECK(contains(e_missing, "cannot open"));
    CHECK(contains(err("abc"), "file is 3 bytes, too short for the 8-byte header length"));
    CHECK(contains(err(st_bytes(good, data8, 0)), "header length is 0"));
    CHECK(contains(err(st_bytes(good, data8, 1ull << 40)), "header length 1099511627776 is implausible"));
    CHECK(contains(err(st_bytes(good, data8, 1000)), "header length 1000 runs past the end of the file"));
    const auto e_json = err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", data8));
    CHECK(contains(e_json, "bad.safetensors"));
    CHECK(contains(e_json, "header is not valid JSON"));
    CHECK(contains(err(st_bytes("[1,2]", "")), "header is an array, expected an object"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(5, 'x'))),
                   "tensor 'a' ends at data byte 8 but the file holds only 5 data bytes (truncated?)"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}})", data8)),
                   "data_offsets [0, 800] hold 800 bytes, but F32 [2] needs 8"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8)),
                   "end before they begin"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data8 + "1234")),
                   "tensor 'a' starts at data byte 4, expected 0 (gap between tensors)"));
    CHECK(contains(
        err(st_bytes(
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            data8)),
        "(tensors overlap)"));
    CHECK(contains(err(st_bytes(good, data8 + "xx")),
                   "tensors cover 8 data bytes but the file holds 10 (trailing bytes)"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", data8)),
                   "tensor 'a' has an unsupported dtype 'F17'"));
    CHECK(
        contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8)), "shape[0] is -2"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8)),
                   "shape is a number, expected an array"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8)),
                   "data_offsets must be an array of two integers"));
    CHECK(
        contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", data8)), "needs dtype, shape and data_offsets"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", data8)),
                   "unknown field 'x'"));
    CHECK(contains(err(st_bytes(R"({"a":[1]})", data8)), "tensor 'a' is described by an array"));
    CHECK(contains(err(st_bytes(R"({"__metadata__":{"k":1}})", "")),
                   "__metadata__ value of 'k' is a number, expected a string"));
    CHECK(contains(
        err(st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                     data8)),
        "is too large"));

    // Deeply nested JSON stops at the parser's depth limit (no stack overflow, however deep).
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK(contains(err(st_bytes(R"({"a":)" + deep + "}", "")), "nesting deeper than 64"));
    CHECK(contains(err(st_bytes(R"({"__metadata__":{"k":)" + deep + "}}", "")), "nesting deeper than 64"));
    // Two tensors of one name: the second would silently shadow the first.
    const auto e_dup = err(st_bytes(
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
        data8));
    CHECK(contains(e_dup, "header is not valid JSON"));
    CHECK(contains(e_dup, "duplicate key \"a\""));
    // Dimensions that fit 64 bits one by one but whose product does not (2^80 elements).
    CHECK(contains(
        err(st_bytes(R"({"a":{"dtype":"U8","shape":[65536,65536,65536,65536,65536],"data_offsets":[0,8]}})", data8)),
        "shape [65536, 65536, 65536, 65536, 65536] is too large"));
    // Offsets beyond the file, up to where adding the data's start would wrap 64 bits.
    CHECK(contains(
        err(st_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551607,18446744073709551615]}})",
                     data8)),
        "tensor 'a' ends at data byte 18446744073709551615 but the file holds only 8 data bytes"));
    CHECK(contains(err(st_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[1000,1008]}})", data8)),
                   "tensor 'a' ends at data byte 1008 but the file holds only 8 data bytes"));

    // A file cut short anywhere is refused.
    SafetensorsWriter w;
    const std::vector<float> v(10, 1.0f);
    w.add("v", {10}, v.data());
    w.save(p);
    const std::string full = read_file(p);
    for (std::size_t cut :
         {std::size_t(0), std::size_t(7), std::size_t(20), full.size() - 40 /* header only */, full.size() - 1}) {
        write_file(p, full.substr(0, cut));
        CHECK_MESSAGE(!error_of([&] { SafetensorsFile f(p); }).empty(), "cut at ", cut);
    }
}

TEST_CASE("safetensors: saving replaces the file atomically") {
    TempDir t;
    const std::string p = t.file("ckpt.safetensors");
    const std::vector<float> one(4, 1.0f), two(4, 2.0f);
    SafetensorsWriter w1, w2;
    w1.add("x", {4}, one.data());
    w2.add("x", {4}, two.data());
    w1.save(p);
    CHECK(t.listing() == std::vector<std::string>{"ckpt.safetensors"});
    w2.save(p);
    CHECK(t.listing() == std::vector<std::string>{"ckpt.safetensors"});  // no temporary file left
    CHECK(SafetensorsFile(p).read<float>("x") == two);

    // An interrupted save: the writer dies before commit. The old file is untouched, the
    // temporary file is gone.
    {
        AtomicFile f(p);
        CHECK(f.temp_path() != p);
        CHECK(fs::path(f.temp_path()).parent_path() == fs::path(p).parent_path());
        f.write("garbage", 7);
        CHECK(t.listing().size() == 2);
    }
    CHECK(t.listing() == std::vector<std::string>{"ckpt.safetensors"});
    CHECK(SafetensorsFile(p).read<float>("x") == two);

    // Failures name the path.
    const auto e = error_of([&] { w1.save(t.file("no/such/dir/x.safetensors")); });
    CHECK(contains(e, "no/such/dir/x.safetensors"));
    CHECK(contains(e, "No such file or directory"));
    fs::create_directories(t.file("adir"));
    const auto e2 = error_of([&] { w1.save(t.file("adir")); });
    CHECK(contains(e2, "cannot rename"));
    CHECK(fs::is_directory(t.file("adir")));
    CHECK(t.listing() == std::vector<std::string>{"adir", "ckpt.safetensors"});
}

TEST_CASE("safetensors: Python's standard library reads our files, and we read Python's") {
    if (!fs::exists("/usr/bin/python3")) DIFFUSE_SKIP("/usr/bin/python3 is not installed");
    REQUIRE(fs::exists(kChecker));
    TempDir t;
    const std::vector<float> f{0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f, 1e-8f, 0.1f, 70000.0f, -3.3e-5f};
    const std::vector<double> d{0.1, -2.0, 1e300, 5e-324};
    const std::vector<std::int64_t> step{-5, 1ll << 50};
    SafetensorsWriter w;
    w.add("w.f32", {2, 5}, f.data());
    w.add("w.f16", {10}, f.data(), DType::F16);
    w.add("w.bf16", {5, 2}, f.data(), DType::BF16);
    w.add("w.f64", {2, 2}, d.data());
    w.add("step", {2}, step.data());
    w.set_metadata("format", "pt");
    w.save(t.file("ours.safetensors"));

    std::string out;
    REQUIRE(run_checker("--dump " + t.file("ours.safetensors"), out) == 0);
    INFO(out);
    // Parse "name \t dtype \t shape \t values" lines and compare values exactly.
    std::map<std::string, std::vector<double>> got;
    std::map<std::string, std::string> dtypes;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream cols(line);
        std::string name, dtype, shape, values;
        std::getline(cols, name, '\t');
        std::getline(cols, dtype, '\t');
        std::getline(cols, shape, '\t');
        std::getline(cols, values, '\t');
        if (name == "__metadata__") {
            CHECK(dtype == "format");
            CHECK(shape == "pt");
            continue;
        }
        dtypes[name] = dtype + " " + shape;
        std::istringstream vs(values);
        for (std::string v; vs >> v;) got[name].push_back(std::strtod(v.c_str(), nullptr));
    }
    CHECK(dtypes["w.f32"] == "F32 2,5");
    CHECK(dtypes["w.f16"] == "F16 10");
    CHECK(dtypes["w.bf16"] == "BF16 5,2");
    CHECK(dtypes["w.f64"] == "F64 2,2");
    CHECK(dtypes["step"] == "I64 2");
    REQUIRE(got["w.f16"].size() == f.size());
    REQUIRE(got["w.bf16"].size() == f.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
        CHECK(got["w.f32"][i] == double(f[i]));
        CHECK(got["w.f16"][i] == double(half_to_float(float_to_half(f[i]))));  // Python decodes with struct 'e'
        CHECK(got["w.bf16"][i] == double(bf16_to_float(float_to_bf16(f[i]))));
    }
    CHECK(got["w.f16"][8] == std::numeric_limits<double>::infinity());  // 70000 is beyond half range
    CHECK(got["w.f64"] == d);
    CHECK(got["step"] == std::vector<double>{-5.0, double(1ll << 50)});

    // The checker is a real validator: it refuses a truncated file.
    std::string bytes = read_file(t.file("ours.safetensors"));
    write_file(t.file("cut.safetensors"), bytes.substr(0, bytes.size() - 3));
    CHECK(run_checker(t.file("cut.safetensors"), out) == 1);

    // A file written by Python (unpadded header, keys out of data order, \u escapes).
    REQUIRE(run_checker("--write " + t.file("py.safetensors"), out) == 0);
    SafetensorsFile py(t.file("py.safetensors"));
    CHECK(py.metadata().at("note") == "written by check_safetensors.py \xc3\xa9");
    CHECK(py.read<float>("layer.weight") == std::vector<float>{0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f});
    CHECK(py.read<float>("layer.bias") == std::vector<float>{1.0f, -2.5f, 0.0999755859375f, 0x1p-14f});
    CHECK(py.read<std::int64_t>("step") == std::vector<std::int64_t>{-3, 0, (1ll << 40) + 7});
    CHECK(py.tensors().front().name == "layer.weight");  // ordered by data offset
}
