// Dataset files: JSON Lines (one object per line) or one JSON array of objects. Each record
// keeps where it came from ("FILE:LINE", or "FILE: element N" in an array file) for messages.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace paft {

struct Record {
    nlohmann::ordered_json value;  // the object, fields in file order (templates see them so)
    std::string            where;  // "FILE:LINE" or "FILE: element N" (1-based)
};

// Calls `each` with every record in file order until it returns false. JSON Lines files are
// streamed (a large dataset is never held whole as JSON); blank lines are skipped. Invalid JSON or
// a non-object record is an InputError naming the file and line (or element).
void for_each_record(const std::string & path, const std::function<bool(Record &&)> & each);

// Every record of the file.
std::vector<Record> read_records(const std::string & path);

}  // namespace paft
