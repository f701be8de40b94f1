#include "eval/results.h"

#include "io/fs.h"

#include <fmt/format.h>

#include <vector>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

std::string version_text(const ojson & version) {
    return version.is_string() ? version.get<std::string>() : version.dump();
}

size_t width(const std::string & s) {
    size_t n = 0;
    for (char c : s) {
        n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }
    return n;
}

std::string pad(const std::string & s, size_t w, char align) {  // align: 'l', 'r' or 'c'
    const size_t gap   = w > width(s) ? w - width(s) : 0;
    const size_t left  = align == 'r' ? gap : align == 'c' ? gap / 2 : 0;
    return std::string(left, ' ') + s + std::string(gap - left, ' ');
}

}  // namespace

ojson results_json(const EvalReport & report) {
    ojson results  = ojson::object();
    ojson versions = ojson::object();
    for (const TaskResult & t : report.tasks) {
        ojson metrics = ojson::object();
        for (const MetricValue & m : t.metrics) {
            metrics[m.name]             = m.value;
            metrics[m.name + "_stderr"] = m.std_error ? ojson(*m.std_error) : ojson(nullptr);
        }
        results[t.name]  = metrics;
        versions[t.name] = t.version;
    }
    ojson out;
    out["results"]  = results;
    out["versions"] = versions;
    out["config"]   = report.config;
    return out;
}

void write_results_json(const std::string & path, const EvalReport & report) {
    write_file_atomic(path, results_json(report).dump(2) + "\n");
}

std::string results_table(const EvalReport & report) {
    const std::vector<std::string> headers = {"Task", "Version", "Metric", "Value", "", "Stderr"};
    const char                     align[] = {'l', 'r', 'l', 'r', 'l', 'r'};
    std::vector<std::vector<std::string>> rows;
    for (const TaskResult & t : report.tasks) {
        bool first = true;
        for (const MetricValue & m : t.metrics) {
            rows.push_back({first ? t.name : "", first ? version_text(t.version) : "", m.name, fmt::format("{:.4f}", m.value),
                            m.std_error ? "±" : "", m.std_error ? fmt::format("{:.4f}", *m.std_error) : ""});
            first = false;
        }
    }
    std::vector<size_t> widths(headers.size(), 3);  // pytablewriter's narrowest column
    for (size_t c = 0; c < headers.size(); c++) {
        widths[c] = std::max(widths[c], width(headers[c]));
        for (const auto & row : rows) {
            widths[c] = std::max(widths[c], width(row[c]));
        }
    }
    std::string out = "|";
    for (size_t c = 0; c < headers.size(); c++) {
        out += pad(headers[c], widths[c], 'c') + "|";
    }
    out += "\n|";
    for (size_t c = 0; c < headers.size(); c++) {
        out += align[c] == 'r' ? std::string(widths[c] - 1, '-') + ":|" : std::string(widths[c], '-') + "|";
    }
    out += "\n";
    for (const auto & row : rows) {
        out += "|";
        for (size_t c = 0; c < headers.size(); c++) {
            out += pad(row[c], widths[c], align[c]) + "|";
        }
        out += "\n";
    }
    return out;
}

ojson sample_json(const std::string & task, const DocSample & s) {
    ojson line;
    line["task"]   = task;
    line["doc_id"] = s.doc_id;
    line["where"]  = s.where;
    if (!s.loglikelihood_requests.empty()) {
        ojson requests = ojson::array();
        for (size_t i = 0; i < s.loglikelihood_requests.size(); i++) {
            requests.push_back({{"context", s.loglikelihood_requests[i].context},
                                {"continuation", s.loglikelihood_requests[i].continuation},
                                {"logprob", s.loglikelihoods[i].logprob},
                                {"is_greedy", s.loglikelihoods[i].is_greedy}});
        }
        line["loglikelihood_requests"] = requests;
    }
    if (!s.greedy_requests.empty()) {
        ojson requests = ojson::array();
        for (size_t i = 0; i < s.greedy_requests.size(); i++) {
            requests.push_back({{"context", s.greedy_requests[i].context},
                                {"until", s.greedy_requests[i].until},
                                {"max_gen_toks", s.greedy_requests[i].max_gen_toks},
                                {"generation", s.generations[i]}});
        }
        line["greedy_requests"] = requests;
        line["extracted"]       = s.extracted;
    }
    ojson metrics = ojson::object();
    for (const auto & [name, v] : s.metrics) {
        metrics[name] = v;
    }
    line["metrics"] = metrics;
    return line;
}

DocSample sample_from_json(const ojson & line) {
    DocSample s;
    s.doc_id = line.at("doc_id").get<size_t>();
    s.where  = line.at("where").get<std::string>();
    for (const ojson & r : line.value("loglikelihood_requests", ojson::array())) {
        s.loglikelihood_requests.push_back({r.at("context").get<std::string>(), r.at("continuation").get<std::string>()});
        s.loglikelihoods.push_back({r.at("logprob").get<double>(), r.at("is_greedy").get<bool>()});
    }
    for (const ojson & r : line.value("greedy_requests", ojson::array())) {
        s.greedy_requests.push_back({r.at("context").get<std::string>(),
                                     r.at("until").get<std::vector<std::string>>(), r.at("max_gen_toks").get<int>()});
        s.generations.push_back(r.at("generation").get<std::string>());
    }
    s.extracted = line.value("extracted", std::string());
    for (const auto & [name, v] : line.at("metrics").items()) {
        s.metrics.emplace_back(name, v.get<double>());
    }
    return s;
}

ojson task_result_json(const TaskResult & t) {
    ojson metrics = ojson::array();
    for (const MetricValue & m : t.metrics) {
        metrics.push_back({{"name", m.name}, {"value", m.value},
                           {"stderr", m.std_error ? ojson(*m.std_error) : ojson(nullptr)}});
    }
    ojson samples = ojson::array();
    for (const DocSample & s : t.samples) {
        samples.push_back(sample_json(t.name, s));
    }
    return {{"name", t.name},   {"version", t.version}, {"num_fewshot", t.num_fewshot},
            {"docs", t.docs},   {"metrics", metrics},   {"samples", samples}};
}

TaskResult task_result_from_json(const ojson & j) {
    TaskResult t;
    t.name        = j.at("name").get<std::string>();
    t.version     = j.at("version");
    t.num_fewshot = j.at("num_fewshot").get<int>();
    t.docs        = j.at("docs").get<size_t>();
    for (const ojson & m : j.at("metrics")) {
        MetricValue v;
        v.name  = m.at("name").get<std::string>();
        v.value = m.at("value").get<double>();
        if (!m.at("stderr").is_null()) {
            v.std_error = m.at("stderr").get<double>();
        }
        t.metrics.push_back(v);
    }
    for (const ojson & s : j.at("samples")) {
        t.samples.push_back(sample_from_json(s));
    }
    return t;
}

void write_samples_jsonl(const std::string & path, const EvalReport & report) {
    write_file_atomic_stream(path, [&](const WriteChunk & write) {
        for (const TaskResult & t : report.tasks) {
            for (const DocSample & s : t.samples) {
                const std::string text = sample_json(t.name, s).dump() + "\n";
                write(text.data(), text.size());
            }
        }
    });
}

}  // namespace paft
