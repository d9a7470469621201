// Writes the seed corpus of every fuzz target (fuzz/corpus/NAME/) with the library's own writers:
// a few small valid files of each kind, so the fuzzers start from inputs that pass the first checks.
//   build-fuzz/make_seeds fuzz/corpus
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "diffuse/io/jpeg.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& bytes) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// An IDX file: magic 0x0000 08 rank, big-endian uint32 dimensions, then bytes counting up.
std::string idx(const std::vector<std::uint32_t>& dims) {
    std::string s = {0, 0, 8, char(dims.size())};
    std::size_t n = 1;
    for (std::uint32_t d : dims) {
        for (int k = 3; k >= 0; --k) s += char(d >> (8 * k));
        n *= d;
    }
    for (std::size_t i = 0; i < n; ++i) s += char(i * 37);
    return s;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
    gzFile f = gzopen(path.c_str(), "wb9");
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
}

std::vector<std::uint8_t> gradient(int h, int w, int c) {
    std::vector<std::uint8_t> p(std::size_t(h * w * c));
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = std::uint8_t(i * 29 + i / 7);
    return p;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    const fs::path dir = argv[1];
    using diffuse::io::DType;
    using namespace std::string_literals;
    for (const char* name :
         {"fuzz_json", "fuzz_safetensors", "fuzz_idx", "fuzz_png", "fuzz_jpeg", "fuzz_metadata", "fuzz_tokenizer"})
        fs::create_directories(dir / name);

    write(dir / "fuzz_json/object.json", R"({"a": [1, -2.5e3, true, false, null], "b": {"c": "\u00e9\ud83d\ude00"}})");
    write(dir / "fuzz_json/header.json",
          R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})");
    write(dir / "fuzz_json/nested.json", "[[[[[[[[{\"k\":[]}]]]]]]]]");
    write(dir / "fuzz_json/number.json", "18446744073709551615");

    const std::vector<float> f = {1, -2, 3.5f, 0, 1e-3f, 6};
    const std::vector<std::int32_t> ints = {7, -1};
    {
        diffuse::io::SafetensorsWriter w;
        w.add("w", {2, 3}, f.data());
        w.save((dir / "fuzz_safetensors/f32.safetensors").string());
    }
    {
        diffuse::io::SafetensorsWriter w;
        w.add("a.weight", {3, 2}, f.data(), DType::F16);
        w.add("a.bias", {2}, f.data(), DType::BF16);
        w.add("c", {1, 2}, ints.data());
        w.set_metadata("step", "12");
        w.save((dir / "fuzz_safetensors/mixed.safetensors").string());
    }
    {
        diffuse::io::SafetensorsWriter w;
        w.add("empty", {0, 4}, f.data(), DType::F64);
        w.add("scalar", {}, f.data(), DType::F64);
        w.save((dir / "fuzz_safetensors/f64.safetensors").string());
    }

    write(dir / "fuzz_idx/images.idx3", idx({2, 3, 4}));
    write(dir / "fuzz_idx/labels.idx1", idx({5}));
    write_gzip(dir / "fuzz_idx/images.idx3.gz", idx({1, 4, 4}));
    write_gzip(dir / "fuzz_idx/labels.idx1.gz", idx({3}));

    for (int c = 1; c <= 4; ++c)
        diffuse::io::write_png((dir / ("fuzz_png/c" + std::to_string(c) + ".png")).string(), 5, 3, c,
                               gradient(5, 3, c).data());
    for (int c : {1, 3}) {
        const auto px = gradient(9, 17, c);
        diffuse::io::write_jpeg((dir / ("fuzz_jpeg/c" + std::to_string(c) + ".jpg")).string(), 9, 17, c, px.data(), 80);
    }

    write(dir / "fuzz_metadata/metadata.jsonl",
          "{\"file_name\": \"cats/1.png\", \"text\": \"a cat\"}\n"
          "{\"file_name\": \"2.jpg\", \"text\": [\"one\", \"two\"]}\n\n"
          "{\"file_name\": \"../x.png\", \"text\": \"out\"}\n");
    write(dir / "fuzz_metadata/metadata.csv",
          "file_name,text,extra\r\na.png,\"a, \"\"quoted\"\" cat\",1\nb.png,dog,2\n");

    write(dir / "fuzz_tokenizer/vocab", "words+unk a cat dark-gray bag\0A dark-gray Cat, on a bag!"s);
    write(dir / "fuzz_tokenizer/bytes", "words+bytes shirt\0a red shirt \xC3\xA9t\xC3\xA9"s);
    write(dir / "fuzz_tokenizer/learn", "a black dress\na white shirt\nsneakers, a pair\n");

    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) std::printf("%6zu %s\n", read(e.path()).size(), e.path().c_str());
    return 0;
}
