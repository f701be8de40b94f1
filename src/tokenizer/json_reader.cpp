#include "tokenizer/json_reader.h"

#include "core/error.h"
#include "io/json_snippet.h"

#include <fmt/format.h>

namespace paft::tok {

namespace {

std::string join(const std::string & path, const char * key) { return path.empty() ? std::string(key) : path + "." + key; }

}  // namespace

void JsonReader::fail(const std::string & path, const std::string & what) const {
    throw InputError(path.empty() ? fmt::format("{}: {}", file_, what) : fmt::format("{}: {} {}", file_, path, what));
}

const json * JsonReader::find(const json & obj, const std::string & path, const char * key) const {
    if (!obj.is_object()) {
        fail(path.empty() ? "the top level" : path, "must be an object, got " + json_snippet(obj));
    }
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}

const json & JsonReader::require(const json & obj, const std::string & path, const char * key) const {
    const json * value = find(obj, path, key);
    if (!value) {
        fail(path, fmt::format("is missing the field '{}'", key));
    }
    return *value;
}

void JsonReader::for_each(const json & obj, const std::string & path, const char * key,
                          const std::function<void(const json &, const std::string &)> & each) const {
    const json &      list = require(obj, path, key);
    const std::string at   = join(path, key);
    if (!list.is_array()) {
        fail(at, "must be a list");
    }
    for (size_t i = 0; i < list.size(); ++i) {
        each(list[i], at + "[" + std::to_string(i) + "]");
    }
}

std::string JsonReader::string(const json & obj, const std::string & path, const char * key) const {
    const json & value = require(obj, path, key);
    if (!value.is_string()) {
        fail(join(path, key), "must be a string, got " + json_snippet(value));
    }
    return value.get<std::string>();
}

std::optional<std::string> JsonReader::opt_string(const json & obj, const std::string & path, const char * key) const {
    const json * value = find(obj, path, key);
    if (!value) {
        return std::nullopt;
    }
    if (!value->is_string()) {
        fail(join(path, key), "must be a string, got " + json_snippet(*value));
    }
    return value->get<std::string>();
}

bool JsonReader::boolean(const json & obj, const std::string & path, const char * key, bool fallback) const {
    const json * value = find(obj, path, key);
    if (!value) {
        return fallback;
    }
    if (!value->is_boolean()) {
        fail(join(path, key), "must be true or false, got " + json_snippet(*value));
    }
    return value->get<bool>();
}

int64_t JsonReader::integer(const json & obj, const std::string & path, const char * key, int64_t fallback) const {
    const json * value = find(obj, path, key);
    if (!value) {
        return fallback;
    }
    if (!value->is_number_integer()) {
        fail(join(path, key), "must be an integer, got " + json_snippet(*value));
    }
    return value->get<int64_t>();
}

int32_t JsonReader::token_id(const json & value, const std::string & path) const {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxTokenId) {
        fail(path, fmt::format("must be a token id in [0, {}], got {}", kMaxTokenId, json_snippet(value)));
    }
    return static_cast<int32_t>(value.get<int64_t>());
}

std::string JsonReader::type(const json & obj, const std::string & path) const {
    return string(obj, path, "type");
}

void JsonReader::unsupported(const std::string & path, const std::string & type) const {
    fail(path, fmt::format("type '{}' is not supported", type));
}

}  // namespace paft::tok
