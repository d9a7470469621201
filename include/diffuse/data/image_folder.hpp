// An image folder with a captions file, in the layout people already use (Hugging Face's
// `imagefolder`): images anywhere under one folder, plus either
//   metadata.jsonl  one JSON object per line, {"file_name": "cats/1.png", "text": "a cat"}; "text"
//                   may also be an array of strings, one of which is drawn per epoch; or
//   metadata.csv    a header naming the columns file_name and text (others are ignored), then
//                   one row per image; fields may be quoted ("a, b" and "say ""hi""").
// Images are PNG or JPEG (told by content), decoded once at load, alpha composited over a chosen
// background (white by default), converted to gray or RGB, resized and centre-cropped to
// resolution × resolution (io/image.hpp says exactly how) and kept as bytes: resolution² × channels
// bytes per image (3 KiB at 32×32 RGB, 12 KiB at 64×64 RGB) plus its name and captions.
//
// The folder is untrusted input and is only ever read. A file_name that is absolute, has a ".."
// component or leads out of the folder through a symbolic link always stops the load. A line that
// is not valid JSON or CSV, lacks a file_name or a caption, or names a missing, corrupt, empty or
// oversized image is reported with the metadata file's name and line number; on_error chooses
// whether that stops the load (an exception) or skips the entry (reported, and counted).
//
// ImageFolder is a CaptionedImageSource: ImageFolderBatches<T, N, Size, C> serves it in shuffled,
// resumable batches as data::Batches does for Fashion-MNIST. Captions of one entry: its text, or
// with several, texts[stream_rng(seed, 1, epoch, i).below(count)]. Labels are -1 (none).
#ifndef DIFFUSE_DATA_IMAGE_FOLDER_HPP
#define DIFFUSE_DATA_IMAGE_FOLDER_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/data/batches.hpp"
#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/io/json.hpp"

namespace diffuse::data {

/// What a bad entry does: stop the load with an exception naming file and line, or skip it.
enum class OnError { stop, skip };

struct ImageFolderOptions {
    int resolution = 32;   // images become resolution × resolution
    int channels = 3;      // 1 (gray) or 3 (RGB)
    io::Rgb background{};  // what transparent pixels are composited over (white)
    OnError on_error = OnError::stop;
    std::string metadata;  // the captions file inside the folder; "" = metadata.jsonl or metadata.csv
    std::uint64_t max_pixels = io::kMaxImagePixels;  // larger images are refused (decompression bombs)
    std::ostream* report = &std::cerr;               // where skipped entries are reported; null: silent
};

/// One entry of a metadata file, or the reason its line is unusable (error non-empty).
struct MetadataEntry {
    int line = 0;  // 1-based line of the file where the entry starts
    std::string file_name;
    std::vector<std::string> texts;  // at least one, none empty, when error is empty
    std::string error;
};

namespace detail {

inline std::string_view strip_bom(std::string_view s) { return s.substr(0, 3) == "\xEF\xBB\xBF" ? s.substr(3) : s; }

inline bool blank(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

/// "text" of a JSON line: a non-empty string or a non-empty array of them; "" when fine, else why not.
inline std::string texts_from_json(const io::json::Value* v, std::vector<std::string>& texts) {
    using io::json::Value;
    if (!v || v->kind == Value::null) return "no caption (\"text\" is missing)";
    if (v->kind == Value::string) {
        if (v->text.empty()) return "empty caption";
        texts.push_back(v->text);
        return "";
    }
    if (v->kind != Value::array)
        return std::string("\"text\" is ") + io::json::kind_name(v->kind) +
               ", expected a string or an array of strings";
    if (v->items.empty()) return "no caption (\"text\" is an empty array)";
    for (const Value& t : v->items) {
        if (t.kind != Value::string)
            return std::string("\"text\" holds ") + io::json::kind_name(t.kind) + ", expected only strings";
        if (t.text.empty()) return "empty caption in \"text\"";
        texts.push_back(t.text);
    }
    return "";
}

}  // namespace detail

/// The entries of a metadata.jsonl file's text; blank lines are ignored.
inline std::vector<MetadataEntry> parse_metadata_jsonl(std::string_view text) {
    using io::json::Value;
    std::vector<MetadataEntry> out;
    text = detail::strip_bom(text);
    int line = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t end = std::min(text.find('\n', pos), text.size());
        std::string_view s = text.substr(pos, end - pos);
        pos = end + 1;
        ++line;
        if (detail::blank(s)) continue;
        MetadataEntry e;
        e.line = line;
        try {
            const Value v = io::json::parse(s);
            if (v.kind != Value::object) {
                e.error = std::string("expected a JSON object, found ") + io::json::kind_name(v.kind);
            } else if (const Value* f = v.find("file_name"); !f || f->kind != Value::string || f->text.empty()) {
                e.error = f ? "\"file_name\" must be a non-empty string" : "no \"file_name\"";
            } else {
                e.file_name = f->text;
                e.error = detail::texts_from_json(v.find("text"), e.texts);
            }
        } catch (const std::runtime_error& err) { e.error = err.what(); }
        out.push_back(std::move(e));
    }
    return out;
}

/// The entries of a metadata.csv file's text: a header with file_name and text columns, then rows.
/// Throws std::runtime_error when the header is missing or lacks a column (no row is usable then).
inline std::vector<MetadataEntry> parse_metadata_csv(std::string_view text) {
    text = detail::strip_bom(text);
    struct Record {
        int line;
        std::vector<std::string> fields;
        std::string error;
    };
    std::vector<Record> records;
    std::size_t i = 0;
    int line = 1;
    while (i < text.size()) {
        Record r{line, {}, {}};
        std::string field;
        bool quoted = false, done = false;
        while (!done) {
            if (i >= text.size()) {
                if (quoted) r.error = "unterminated quoted field";
                r.fields.push_back(std::move(field));
                break;
            }
            const char c = text[i++];
            if (quoted) {
                if (c == '"') {
                    if (i < text.size() && text[i] == '"') {
                        field += '"';
                        ++i;
                    } else quoted = false;
                } else {
                    if (c == '\n') ++line;
                    field += c;
                }
            } else if (c == '"') {
                if (!field.empty() && r.error.empty()) r.error = "a quote inside an unquoted field";
                quoted = true;
            } else if (c == ',') {
                r.fields.push_back(std::move(field));
                field.clear();
            } else if (c == '\n' || c == '\r') {
                if (c == '\r' && i < text.size() && text[i] == '\n') ++i;
                ++line;
                r.fields.push_back(std::move(field));
                done = true;
            } else {
                field += c;
            }
        }
        if (!(r.fields.size() == 1 && r.fields[0].empty() && r.error.empty())) records.push_back(std::move(r));
    }
    if (records.empty()) throw std::runtime_error("no header line (file_name,text)");
    const Record& header = records.front();
    const auto column = [&](std::string_view name) {
        const auto it = std::find(header.fields.begin(), header.fields.end(), name);
        if (!header.error.empty() || it == header.fields.end())
            throw std::runtime_error("line 1: the header must name the columns file_name and text");
        return std::size_t(it - header.fields.begin());
    };
    const std::size_t fcol = column("file_name"), tcol = column("text");
    std::vector<MetadataEntry> out;
    for (std::size_t k = 1; k < records.size(); ++k) {
        Record& r = records[k];
        MetadataEntry e;
        e.line = r.line;
        if (!r.error.empty()) e.error = r.error;
        else if (r.fields.size() != header.fields.size())
            e.error =
                std::to_string(r.fields.size()) + " fields, the header has " + std::to_string(header.fields.size());
        else if (r.fields[fcol].empty()) e.error = "empty file_name";
        else if (r.fields[tcol].empty()) e.error = "no caption (empty text)";
        else {
            e.file_name = std::move(r.fields[fcol]);
            e.texts.push_back(std::move(r.fields[tcol]));
        }
        out.push_back(std::move(e));
    }
    return out;
}

/// Throws std::runtime_error unless file_name is a relative path that stays inside the folder
/// lexically: not absolute, no "..", no NUL byte.
inline void check_inside_folder(const std::string& file_name) {
    if (file_name.find('\0') != std::string::npos) throw std::runtime_error("file_name holds a NUL byte");
    const std::filesystem::path p(file_name);
    if (p.is_absolute() || p.has_root_name() || p.has_root_directory())
        throw std::runtime_error("file_name \"" + file_name +
                                 "\" is an absolute path; paths must be relative to the folder");
    for (const auto& part : p)
        if (part == "..") throw std::runtime_error("file_name \"" + file_name + "\" leads out of the folder (\"..\")");
}

/// A folder of PNG or JPEG images with their captions, loaded into memory at a fixed size.
class ImageFolder {
public:
    explicit ImageFolder(const std::string& folder, ImageFolderOptions opt = {}) : opt_(std::move(opt)) {
        namespace fs = std::filesystem;
        if (opt_.resolution <= 0 || opt_.resolution > 4096)
            throw std::invalid_argument("image folder: resolution must be in 1..4096");
        if (opt_.channels != 1 && opt_.channels != 3)
            throw std::invalid_argument("image folder: channels must be 1 (gray) or 3 (RGB)");
        std::error_code ec;
        if (!fs::is_directory(folder, ec)) throw std::runtime_error("image folder " + folder + ": not a directory");
        const fs::path root = fs::canonical(folder);
        const std::string meta = metadata_path(folder);
        const std::string text = read_text(meta);
        std::vector<MetadataEntry> entries;
        try {
            entries = meta.size() >= 4 && meta.compare(meta.size() - 4, 4, ".csv") == 0 ? parse_metadata_csv(text)
                                                                                        : parse_metadata_jsonl(text);
        } catch (const std::runtime_error& e) { throw std::runtime_error(meta + ": " + e.what()); }
        for (MetadataEntry& e : entries) {
            const std::string where = meta + " line " + std::to_string(e.line) + ": ";
            if (!e.error.empty()) {
                problem(where + e.error);
                continue;
            }
            const std::string image_where = where + "image \"" + e.file_name + "\": ";
            try {
                check_inside_folder(e.file_name);
            } catch (const std::runtime_error& err) {
                throw std::runtime_error(where + err.what());  // never skipped: the file is not to be trusted
            }
            const fs::path path = root / e.file_name;
            const fs::path resolved = fs::weakly_canonical(path, ec);
            if (ec || !within(root, resolved))
                throw std::runtime_error(image_where + "leads out of the folder (through a symbolic link)");
            std::vector<std::uint8_t> pixels;
            try {
                const std::vector<std::uint8_t> file = io::detail::read_whole_file(path.string());
                const io::ByteImage img = io::decode_image(file.data(), file.size(), e.file_name, opt_.max_pixels);
                pixels = io::fit_image(img, opt_.resolution, opt_.resolution, opt_.channels, opt_.background);
            } catch (const std::runtime_error& err) {
                problem(image_where + err.what());
                continue;
            }
            pixels_.insert(pixels_.end(), pixels.begin(), pixels.end());
            for (const std::string& t : e.texts) max_caption_ = std::max(max_caption_, t.size());
            names_.push_back(std::move(e.file_name));
            texts_.push_back(std::move(e.texts));
            lines_.push_back(e.line);
        }
        if (!problems_.empty() && opt_.report)
            *opt_.report << "image folder " << folder << ": skipped " << problems_.size() << " of " << entries.size()
                         << " entries\n";
        if (names_.empty())
            throw std::runtime_error(meta + ": no usable images (" + std::to_string(entries.size()) + " entries, " +
                                     std::to_string(problems_.size()) + " skipped)");
        metadata_ = meta;
    }

    int size() const { return int(names_.size()); }
    int height() const { return opt_.resolution; }
    int width() const { return opt_.resolution; }
    int channels() const { return opt_.channels; }
    std::size_t max_caption_length() const { return max_caption_; }
    static constexpr std::int32_t label(int) { return -1; }

    /// The entries skipped, and why (file and line in each message).
    const std::vector<std::string>& problems() const { return problems_; }
    int skipped() const { return int(problems_.size()); }
    /// The metadata file read.
    const std::string& metadata() const { return metadata_; }
    const std::string& file_name(int i) const { return names_[std::size_t(i)]; }
    const std::vector<std::string>& texts(int i) const { return texts_[std::size_t(i)]; }
    int line(int i) const { return lines_[std::size_t(i)]; }
    /// Image i's bytes [resolution, resolution, channels].
    const std::uint8_t* pixels(int i) const { return pixels_.data() + std::size_t(i) * image_bytes(); }
    std::size_t image_bytes() const {
        return std::size_t(opt_.resolution) * std::size_t(opt_.resolution) * std::size_t(opt_.channels);
    }

    template <class T>
    void image(int i, T* dst) const {
        const auto& lut = byte_to_unit_table<T>();
        const std::uint8_t* p = pixels(i);
        for (std::size_t k = 0; k < image_bytes(); ++k) dst[k] = lut[p[k]];
    }
    void caption(std::string& out, int i, std::uint64_t seed, std::uint64_t epoch) const {
        const std::vector<std::string>& t = texts_[std::size_t(i)];
        const std::size_t k =
            t.size() == 1 ? 0 : std::size_t(stream_rng(seed, 1, epoch, std::uint64_t(i)).below(t.size()));
        out.assign(t[k]);
    }

private:
    std::string metadata_path(const std::string& folder) const {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (!opt_.metadata.empty()) {
            check_inside_folder(opt_.metadata);
            return (fs::path(folder) / opt_.metadata).string();
        }
        const std::string jsonl = (fs::path(folder) / "metadata.jsonl").string();
        const std::string csv = (fs::path(folder) / "metadata.csv").string();
        const bool has_jsonl = fs::exists(jsonl, ec), has_csv = fs::exists(csv, ec);
        if (has_jsonl && has_csv)
            throw std::runtime_error("image folder " + folder +
                                     ": both metadata.jsonl and metadata.csv; "
                                     "choose one with ImageFolderOptions::metadata");
        if (!has_jsonl && !has_csv)
            throw std::runtime_error("image folder " + folder +
                                     ": no metadata.jsonl or metadata.csv "
                                     "(one {\"file_name\": ..., \"text\": ...} per line)");
        return has_jsonl ? jsonl : csv;
    }

    static std::string read_text(const std::string& path) {
        const std::vector<std::uint8_t> b = io::detail::read_whole_file(path);
        return std::string(b.begin(), b.end());
    }

    static bool within(const std::filesystem::path& root, const std::filesystem::path& p) {
        auto r = root.begin();
        auto q = p.begin();
        for (; r != root.end(); ++r, ++q)
            if (q == p.end() || *q != *r) return false;
        return q != p.end();  // strictly inside
    }

    void problem(const std::string& message) {
        if (opt_.on_error == OnError::stop) throw std::runtime_error(message);
        if (opt_.report) *opt_.report << "skipped: " << message << '\n';
        problems_.push_back(message);
    }

    ImageFolderOptions opt_;
    std::string metadata_;
    std::vector<std::uint8_t> pixels_;  // [size, resolution, resolution, channels]
    std::vector<std::string> names_;
    std::vector<std::vector<std::string>> texts_;
    std::vector<int> lines_;
    std::vector<std::string> problems_;
    std::size_t max_caption_ = 0;
};

/// Shuffled batches [N, Size, Size, C] of an image folder with its captions.
template <class T, int N, int Size, int C>
using ImageFolderBatches = Batches<T, N, Size, Size, C, ImageFolder>;

}  // namespace diffuse::data

#endif
