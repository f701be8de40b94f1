// PyRandom against CPython's random.Random itself: /usr/bin/python3 runs
// tools/reference/pyrandom_ref.py on the same seeds and operations (shuffles of several sizes,
// samples from both of CPython's algorithms and around the size where it switches, getrandbits
// of one and two words, _randbelow around powers of two), and every result must be equal.
#include "eval/pyrandom.h"
#include "io/fs.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace paft;
namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/pyrandom_ref.py";

json spec() {
    // Sample sizes: CPython uses the pool algorithm while n <= 21 + 4^ceil(log4(3k)) (k > 5)
    // or n <= 21 (k <= 5), and rejection of repeats above: (21, 5) / (22, 5) and (37, 6) /
    // (38, 6) straddle the switch.
    const json ops = json::array({
        json::array({"shuffle", 0}),         json::array({"shuffle", 1}),        json::array({"shuffle", 2}),
        json::array({"shuffle", 10}),        json::array({"sample", 10, 3}),     json::array({"sample", 10, 10}),
        json::array({"sample", 5, 0}),       json::array({"sample", 21, 5}),     json::array({"sample", 22, 5}),
        json::array({"sample", 37, 6}),      json::array({"sample", 38, 6}),     json::array({"sample", 1000, 25}),
        json::array({"sample", 1119, 25}),   json::array({"sample", 40000, 10}), json::array({"sample", 300, 100}),
        json::array({"getrandbits", 1}),     json::array({"getrandbits", 31}),   json::array({"getrandbits", 32}),
        json::array({"getrandbits", 33}),    json::array({"getrandbits", 48}),   json::array({"getrandbits", 64}),
        json::array({"randbelow", 1}),       json::array({"randbelow", 3}),      json::array({"randbelow", 1000}),
        json::array({"randbelow", 4294967295u}), json::array({"randbelow", 4294967296u}),
        json::array({"randbelow", 4294967297u}), json::array({"randbelow", 1099511627783u}),
        json::array({"shuffle", 1172}),
    });
    json cases = json::array();
    for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, uint64_t{1234}, (uint64_t{1} << 32) + 5,
                          (uint64_t{1} << 63) + 12345}) {
        cases.push_back({{"seed", seed}, {"ops", ops}});
    }
    return cases;
}

json run_python(const fs::path & dir, const json & cases) {
    write_file_atomic((dir / "spec.json").string(), cases.dump());
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --spec '{}' --out '{}'", kOracle,
                                        (dir / "spec.json").string(), (dir / "out.json").string());
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return json::parse(slurp(dir / "out.json"));
}

}  // namespace

TEST(PyRandom, MatchesCPython) {
    const fs::path dir      = fresh_test_folder("paft-pyrandom");
    const json     cases    = spec();
    const json     expected = run_python(dir, cases);
    ASSERT_EQ(expected.size(), cases.size());
    for (size_t c = 0; c < cases.size(); c++) {
        PyRandom rnd(cases[c]["seed"].get<uint64_t>());
        for (size_t i = 0; i < cases[c]["ops"].size(); i++) {
            const json & op   = cases[c]["ops"][i];
            const json & want = expected[c][i];
            const std::string name = op[0];
            SCOPED_TRACE(fmt::format("seed {} op {} {}", cases[c]["seed"].dump(), i, op.dump()));
            if (name == "shuffle") {
                std::vector<size_t> items(op[1].get<size_t>());
                for (size_t k = 0; k < items.size(); k++) {
                    items[k] = k;
                }
                rnd.shuffle(items);
                EXPECT_EQ(json(items), want);
            } else if (name == "sample") {
                EXPECT_EQ(json(rnd.sample(op[1].get<size_t>(), op[2].get<size_t>())), want);
            } else if (name == "getrandbits") {
                EXPECT_EQ(std::to_string(rnd.getrandbits(op[1].get<int>())), want.get<std::string>());
            } else {
                EXPECT_EQ(json(rnd.randbelow(op[1].get<uint64_t>())), want);
            }
        }
    }
}

// Equal seeds give equal streams and another seed another one (the evaluator relies on the first).
TEST(PyRandom, SameSeedSameStream) {
    PyRandom a(42), b(42), c(43);
    std::vector<size_t> x(50), y(50), z(50);
    for (size_t i = 0; i < 50; i++) {
        x[i] = y[i] = z[i] = i;
    }
    a.shuffle(x);
    b.shuffle(y);
    c.shuffle(z);
    EXPECT_EQ(x, y);
    EXPECT_NE(x, z);
}
