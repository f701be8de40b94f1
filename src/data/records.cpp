#include "data/records.h"

#include "core/error.h"
#include "io/fs.h"

#include <fmt/format.h>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// A JSON array file: the whole text is one array of objects.
std::vector<Record> read_array(const std::string & path, const std::string & text) {
    ojson all;
    try {
        all = ojson::parse(text);
    } catch (const ojson::parse_error & e) {
        throw InputError(fmt::format("{}: not valid JSON (at byte {})", path, e.byte));
    }
    std::vector<Record> records;
    for (size_t i = 0; i < all.size(); i++) {
        std::string where = fmt::format("{}: element {}", path, i + 1);
        if (!all[i].is_object()) {
            throw InputError(fmt::format("{}: expected an object", where));
        }
        records.push_back({std::move(all[i]), std::move(where)});
    }
    return records;
}

std::vector<Record> read_lines(const std::string & path, const std::string & text) {
    std::vector<Record> records;
    size_t              start = 0;
    for (int line = 1; start < text.size(); line++) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        std::string_view content(text.data() + start, end - start);
        start = end + 1;
        if (is_blank(content)) {
            continue;
        }
        std::string where = fmt::format("{}:{}", path, line);
        ojson       value;
        try {
            value = ojson::parse(content);
        } catch (const ojson::parse_error & e) {
            throw InputError(fmt::format("{}: not valid JSON (column {})", where, e.byte));
        }
        if (!value.is_object()) {
            throw InputError(fmt::format("{}: expected a JSON object", where));
        }
        records.push_back({std::move(value), std::move(where)});
    }
    return records;
}

}  // namespace

std::vector<Record> read_records(const std::string & path) {
    const std::string text  = read_file(path);
    const size_t      first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '[') {
        return read_array(path, text);
    }
    return read_lines(path, text);
}

}  // namespace paft
