// Typed access to the fields of a tokenizer's JSON files. Every error is an InputError naming the
// file and the field's path, e.g. "tokenizer.json: model.vocab must be an object, got 3".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace paft::tok {

using json = nlohmann::json;

class JsonReader {
public:
    explicit JsonReader(std::string file) : file_(std::move(file)) {}

    const std::string & file() const { return file_; }

    // Throws "FILE: PATH WHAT".
    [[noreturn]] void fail(const std::string & path, const std::string & what) const;

    // obj[key], which must exist and not be null; obj must be an object.
    const json & require(const json & obj, const std::string & path, const char * key) const;
    // obj[key], or nullptr when missing or null.
    const json * find(const json & obj, const std::string & path, const char * key) const;
    // obj[key], which must be a list: each(element, its path "PATH.KEY[i]") for every element.
    void for_each(const json & obj, const std::string & path, const char * key,
                  const std::function<void(const json &, const std::string &)> & each) const;

    std::string                string(const json & obj, const std::string & path, const char * key) const;
    std::optional<std::string> opt_string(const json & obj, const std::string & path, const char * key) const;
    bool                       boolean(const json & obj, const std::string & path, const char * key, bool fallback) const;
    int64_t                    integer(const json & obj, const std::string & path, const char * key, int64_t fallback) const;
    // A token id: an integer in [0, kMaxTokenId].
    int32_t                    token_id(const json & value, const std::string & path) const;

    // The component's "type" string (path names the component, e.g. "pre_tokenizer").
    std::string type(const json & obj, const std::string & path) const;
    [[noreturn]] void unsupported(const std::string & path, const std::string & type) const;

    // Ids above this are refused: the id-to-token table is sized by the largest id.
    static constexpr int64_t kMaxTokenId = (1 << 24) - 1;

private:
    std::string file_;
};

}  // namespace paft::tok
