#include "data/records.h"
#include "io/fs.h"

#include "core/error.h"
#include "io/json_depth.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// A JSON array file: the whole text is one array of objects.
void each_in_array(const std::string & path, std::istream & in, const std::function<bool(Record &&)> & each) {
    ojson all;
    try {
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        check_json_depth(text, path);
        all = ojson::parse(text);
    } catch (const ojson::parse_error & e) {
        throw InputError(fmt::format("{}: not valid JSON (at byte {})", path, e.byte));
    } catch (const ojson::exception & e) {  // a number beyond double's range (1e999)
        throw InputError(fmt::format("{}: not valid JSON: {}", path, e.what()));
    }
    for (size_t i = 0; i < all.size(); i++) {
        std::string where = fmt::format("{}: element {}", path, i + 1);
        if (!all[i].is_object()) {
            throw InputError(fmt::format("{}: expected an object", where));
        }
        if (!each({std::move(all[i]), std::move(where)})) {
            return;
        }
    }
}

void each_line(const std::string & path, std::istream & in, const std::function<bool(Record &&)> & each) {
    std::string line;
    for (long number = 1; std::getline(in, line); number++) {
        if (is_blank(line)) {
            continue;
        }
        std::string where = fmt::format("{}:{}", path, number);
        ojson       value;
        try {
            check_json_depth(line, where);
            value = ojson::parse(line);
        } catch (const ojson::parse_error & e) {
            throw InputError(fmt::format("{}: not valid JSON (column {})", where, e.byte));
        } catch (const ojson::exception & e) {  // a number beyond double's range (1e999)
            throw InputError(fmt::format("{}: not valid JSON: {}", where, e.what()));
        }
        if (!value.is_object()) {
            throw InputError(fmt::format("{}: expected a JSON object", where));
        }
        if (!each({std::move(value), std::move(where)})) {
            return;
        }
    }
}

}  // namespace

void for_each_record(const std::string & path, const std::function<bool(Record &&)> & each) {
    std::ifstream in(path, std::ios::binary);
    if (!in || !is_file(path)) {
        throw InputError(fmt::format("cannot read {}: {}", path, in ? "not a file" : std::strerror(errno)));
    }
    // The first non-blank character tells the two layouts apart.
    char c = 0;
    while (in.get(c) && std::isspace((unsigned char) c)) {
    }
    in.clear();
    in.seekg(0);
    c == '[' ? each_in_array(path, in, each) : each_line(path, in, each);
    if (in.bad()) {
        throw InputError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    }
}

std::vector<Record> read_records(const std::string & path) {
    std::vector<Record> records;
    for_each_record(path, [&](Record && r) {
        records.push_back(std::move(r));
        return true;
    });
    return records;
}

}  // namespace paft
