// mergekit's YAML: reading it into a MergeConfig (every key and value checked, errors naming
// FILE:LINE), evaluating parameter settings per tensor, and writing a config back.
#include "merge/config.h"

#include "core/error.h"
#include "core/suggest.h"
#include "io/yaml_file.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

namespace paft {
namespace {

const std::vector<std::string> kTopKeys = {"models",     "merge_method", "base_model",       "parameters",
                                           "dtype",      "out_dtype",    "tokenizer_source", "tokenizer",
                                           "slices",     "modules",      "chat_template"};

int line_of(const YAML::Node & node) { return node.Mark().line + 1; }

std::string at(const std::string & file, const YAML::Node & node) {
    return fmt::format("{}:{}", file, line_of(node));
}

// A YAML scalar as a parameter value: a number, true/false, or a word.
ParamScalar parse_scalar(const std::string & text) {
    ParamScalar v;
    if (text == "true" || text == "True" || text == "false" || text == "False") {
        v.kind    = ParamScalar::Kind::boolean;
        v.boolean = text[0] == 't' || text[0] == 'T';
        return v;
    }
    char *       end    = nullptr;
    const double number = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
    if (!text.empty() && end && *end == '\0' && std::isfinite(number)) {
        v.number = number;
        return v;
    }
    v.kind = ParamScalar::Kind::text;
    v.text = text;
    return v;
}

ParamSetting parse_setting(const YAML::Node & node, const std::string & file, const std::string & name) {
    ParamSetting s;
    s.where = at(file, node);
    if (node.IsScalar()) {
        s.scalar = parse_scalar(node.Scalar());
        return s;
    }
    if (node.IsSequence() && node.size() > 0 && node[0].IsMap()) {
        s.kind = ParamSetting::Kind::conditions;
        for (const YAML::Node & item : node) {
            if (!item.IsMap()) {
                throw InputError(fmt::format("{}: {}: mix of filter/value entries and plain values", at(file, item), name));
            }
            std::string filter;
            YAML::Node  value;
            for (auto it = item.begin(); it != item.end(); ++it) {
                const std::string key = it->first.as<std::string>();
                if (key == "filter") {
                    filter = it->second.IsScalar() ? it->second.Scalar() : "";
                    if (!it->second.IsScalar()) {
                        throw InputError(fmt::format("{}: {}: filter must be text", at(file, it->first), name));
                    }
                } else if (key == "value") {
                    value = it->second;
                } else {
                    throw InputError(fmt::format("{}: {}: unknown key '{}' in a condition (filter, value)",
                                                 at(file, it->first), name, key));
                }
            }
            if (!value) {
                throw InputError(fmt::format("{}: {}: a condition needs a value", at(file, item), name));
            }
            if (value.IsSequence() && value.size() > 0 && value[0].IsMap()) {
                throw InputError(fmt::format("{}: {}: conditions cannot nest", at(file, value), name));
            }
            s.conditions.emplace_back(filter == "*" ? "" : filter,
                                      std::make_shared<ParamSetting>(parse_setting(value, file, name)));
        }
        return s;
    }
    if (node.IsSequence() && node.size() > 0) {
        s.kind = ParamSetting::Kind::gradient;
        for (const YAML::Node & item : node) {
            const ParamScalar v = item.IsScalar() ? parse_scalar(item.Scalar()) : parse_scalar("[]");  // a word: refused below
            if (v.kind != ParamScalar::Kind::number) {
                throw InputError(fmt::format("{}: {}: a gradient is a list of numbers", at(file, item), name));
            }
            s.gradient.push_back(v.number);
        }
        return s;
    }
    throw InputError(fmt::format("{}: {}: expected a value, a list of numbers (gradient) or a list of "
                                 "filter/value conditions",
                                 s.where, name));
}

std::map<std::string, ParamSetting> parse_parameters(const YAML::Node & node, const std::string & file) {
    std::map<std::string, ParamSetting> out;
    if (!node || node.IsNull()) {
        return out;
    }
    if (!node.IsMap()) {
        throw InputError(fmt::format("{}: parameters: expected a mapping of names to values", at(file, node)));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
        const std::string name = it->first.as<std::string>();
        if (out.count(name)) {
            throw InputError(fmt::format("{}: parameter {} given twice", at(file, it->first), name));
        }
        out[name] = parse_setting(it->second, file, name);
    }
    return out;
}

std::string scalar_text(const YAML::Node & node, const std::string & file, const std::string & key) {
    if (!node.IsScalar()) {
        throw InputError(fmt::format("{}: {}: expected a single value", at(file, node), key));
    }
    return node.Scalar();
}

ModelRef parse_model_node(const YAML::Node & node, const std::string & file, const std::string & key) {
    const std::string text = scalar_text(node, file, key);
    if (text.empty()) {
        throw InputError(fmt::format("{}: {}: empty model path", at(file, node), key));
    }
    return parse_model_ref(text);
}

void emit_setting(YAML::Emitter & out, const ParamSetting & s) {
    switch (s.kind) {
        case ParamSetting::Kind::scalar:
            if (s.scalar.kind == ParamScalar::Kind::number) {
                out << fmt::format("{}", s.scalar.number);  // the shortest text that reads back the same
            } else if (s.scalar.kind == ParamScalar::Kind::boolean) {
                out << s.scalar.boolean;
            } else {
                out << s.scalar.text;
            }
            break;
        case ParamSetting::Kind::gradient:
            out << YAML::Flow << YAML::BeginSeq;
            for (double v : s.gradient) {
                out << fmt::format("{}", v);
            }
            out << YAML::EndSeq;
            break;
        case ParamSetting::Kind::conditions:
            out << YAML::BeginSeq;
            for (const auto & [filter, value] : s.conditions) {
                out << YAML::BeginMap;
                if (!filter.empty()) {
                    out << YAML::Key << "filter" << YAML::Value << filter;
                }
                out << YAML::Key << "value" << YAML::Value;
                emit_setting(out, *value);
                out << YAML::EndMap;
            }
            out << YAML::EndSeq;
            break;
    }
}

void emit_parameters(YAML::Emitter & out, const std::map<std::string, ParamSetting> & params) {
    out << YAML::BeginMap;
    for (const auto & [name, setting] : params) {
        out << YAML::Key << name << YAML::Value;
        emit_setting(out, setting);
    }
    out << YAML::EndMap;
}

}  // namespace

std::optional<ParamScalar> evaluate_setting(const ParamSetting & s, const std::string & tensor, double t) {
    switch (s.kind) {
        case ParamSetting::Kind::scalar:
            return s.scalar;
        case ParamSetting::Kind::gradient: {
            // mergekit: linear interpolation between the two entries around t * (len - 1).
            const double scaled = t * (double) (s.gradient.size() - 1);
            const size_t i0     = std::min((size_t) scaled, s.gradient.size() - 1);
            const size_t i1     = std::min(s.gradient.size() - 1, i0 + 1);
            const double frac   = scaled - (double) i0;
            ParamScalar  v;
            v.number = (1.0 - frac) * s.gradient[i0] + frac * s.gradient[i1];
            return v;
        }
        case ParamSetting::Kind::conditions:
            for (const auto & [filter, value] : s.conditions) {
                if (filter.empty() || tensor.find(filter) != std::string::npos) {
                    return evaluate_setting(*value, tensor, t);
                }
            }
            return std::nullopt;
    }
    return std::nullopt;
}

std::string ModelRef::text() const { return adapter.empty() ? model : model + "+" + adapter; }

ModelRef parse_model_ref(const std::string & text) {
    // mergekit's "base+lora". A '+' inside a directory name is taken literally when the whole
    // text names an existing path.
    const size_t plus = text.rfind('+');
    if (plus == std::string::npos || plus == 0 || plus + 1 == text.size()) {
        return {text, ""};
    }
    std::error_code ec;
    if (std::filesystem::exists(text, ec)) {
        return {text, ""};
    }
    return {text.substr(0, plus), text.substr(plus + 1)};
}

MergeConfig adapter_merge_config(const std::string & base, const std::vector<std::string> & adapters,
                                 const MergeOptions & o) {
    auto number = [](double value, const char * where) {
        ParamSetting s;
        s.scalar.number = value;
        s.where         = where;
        return s;
    };
    for (const auto & [values, field] : {std::pair{&o.weights, "weights"}, {&o.densities, "densities"}}) {
        if (!values->empty() && values->size() != adapters.size()) {
            throw InputError(fmt::format("merge.{}: {} values for {} adapters (give one per adapter, or none)", field,
                                         values->size(), adapters.size()));
        }
    }
    MergeConfig c;
    c.method = o.method;
    c.base   = ModelRef{base, ""};
    std::vector<std::string> models = adapters;
    if (o.method == "slerp" && adapters.size() == 2) {
        // PAFT's SLERP: from the first adapter's model (t = 0) to the second's (t = 1).
        c.base = ModelRef{base, adapters[0]};
        models.erase(models.begin());
    }
    // MergeOptions' empty weights mean 1 each, where the method takes weights.
    const MergeMethodDef * method      = find_merge_method(o.method);
    const bool             has_weights = method && find_param(*method, "weight");
    for (size_t i = 0; i < models.size(); i++) {
        MergeInputModel m{ModelRef{base, models[i]}, {}, fmt::format("adapters[{}]", i)};
        if (i < o.weights.size()) {
            m.parameters["weight"] = number(o.weights[i], "merge.weights");
        } else if (has_weights) {
            m.parameters["weight"] = number(1.0, "merge.weights");
        }
        if (i < o.densities.size()) m.parameters["density"] = number(o.densities[i], "merge.densities");
        c.models.push_back(std::move(m));
    }
    if (o.normalize < -1 || o.normalize > 1) {
        throw InputError(fmt::format("merge.normalize: {} is not -1 (the method's default), 0 or 1", o.normalize));
    }
    if (o.normalize >= 0) {
        ParamSetting s;
        s.scalar.kind    = ParamScalar::Kind::boolean;
        s.scalar.boolean = o.normalize == 1;
        s.where          = "merge.normalize";
        c.parameters["normalize"] = s;
    }
    if (o.lambda != 1.0) c.parameters["lambda"] = number(o.lambda, "merge.lambda");
    if (o.t) c.parameters["t"] = number(*o.t, "merge.t");
    if (!o.rescale.empty()) {
        ParamSetting s;
        s.scalar.kind = ParamScalar::Kind::text;
        s.scalar.text = o.rescale;
        s.where       = "merge.rescale";
        c.parameters["rescale"] = s;
    }
    return c;
}

MergeConfig read_merge_config(const std::string & path) {
    const YAML::Node root = load_yaml_file(path, "merge config");
    if (!root.IsMap()) {
        throw InputError(fmt::format("{}: a merge config is a mapping (models, merge_method, base_model, ...)", path));
    }
    MergeConfig c;
    c.source = path;
    bool has_method = false;
    for (auto it = root.begin(); it != root.end(); ++it) {
        const YAML::Node  keynode = it->first;
        const YAML::Node  value   = it->second;
        const std::string key     = keynode.as<std::string>();
        const std::string where   = at(path, keynode);
        if (std::find(kTopKeys.begin(), kTopKeys.end(), key) == kTopKeys.end()) {
            const std::string near = closest_name(key, kTopKeys);
            throw InputError(fmt::format("{}: unknown key '{}'{}", where, key,
                                         near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
        }
        if (key == "slices" || key == "modules") {
            throw InputError(fmt::format("{}: {}: layer slices (frankenmerges) are not supported; list whole "
                                         "models under 'models'",
                                         where, key));
        }
        if (key == "tokenizer" || key == "chat_template") {
            throw InputError(fmt::format("{}: {}: not supported; the merged model gets the tokenizer files of "
                                         "tokenizer_source (the base model by default)",
                                         where, key));
        }
        if (key == "merge_method") {
            c.method   = scalar_text(value, path, key);
            has_method = true;
        } else if (key == "base_model") {
            c.base = parse_model_node(value, path, key);
        } else if (key == "dtype") {
            c.dtype = scalar_text(value, path, key);
        } else if (key == "out_dtype") {
            c.out_dtype = scalar_text(value, path, key);
        } else if (key == "tokenizer_source") {
            c.tokenizer_source = scalar_text(value, path, key);
            if (c.tokenizer_source == "union") {
                throw InputError(fmt::format("{}: tokenizer_source: union is not supported (base, or a model "
                                             "directory)",
                                             where));
            }
        } else if (key == "parameters") {
            c.parameters = parse_parameters(value, path);
        } else if (key == "models") {
            if (!value.IsSequence() || value.size() == 0) {
                throw InputError(fmt::format("{}: models: expected a list of {{model: PATH, parameters: ...}}", where));
            }
            for (const YAML::Node & item : value) {
                MergeInputModel m;
                m.where = at(path, item);
                if (!item.IsMap() || !item["model"]) {
                    throw InputError(fmt::format("{}: models: each entry needs 'model: PATH'", m.where));
                }
                for (auto f = item.begin(); f != item.end(); ++f) {
                    const std::string field = f->first.as<std::string>();
                    if (field == "model") {
                        m.ref = parse_model_node(f->second, path, "model");
                    } else if (field == "parameters") {
                        m.parameters = parse_parameters(f->second, path);
                    } else {
                        throw InputError(fmt::format("{}: models: unknown key '{}' (model, parameters)",
                                                     at(path, f->first), field));
                    }
                }
                c.models.push_back(std::move(m));
            }
        }
    }
    if (!has_method) {
        throw InputError(fmt::format("{}: merge_method is missing (one of: {})", path, merge_method_list()));
    }
    if (c.models.empty()) {
        throw InputError(fmt::format("{}: models is missing", path));
    }
    return c;
}

std::string merge_config_yaml(const MergeConfig & c) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    out << YAML::Key << "merge_method" << YAML::Value << c.method;
    if (c.base) {
        out << YAML::Key << "base_model" << YAML::Value << c.base->text();
    }
    out << YAML::Key << "models" << YAML::Value << YAML::BeginSeq;
    for (const MergeInputModel & m : c.models) {
        out << YAML::BeginMap << YAML::Key << "model" << YAML::Value << m.ref.text();
        if (!m.parameters.empty()) {
            out << YAML::Key << "parameters" << YAML::Value;
            emit_parameters(out, m.parameters);
        }
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    if (!c.parameters.empty()) {
        out << YAML::Key << "parameters" << YAML::Value;
        emit_parameters(out, c.parameters);
    }
    for (const auto & [key, value] :
         {std::pair{"dtype", c.dtype}, {"out_dtype", c.out_dtype}, {"tokenizer_source", c.tokenizer_source}}) {
        if (!value.empty()) {
            out << YAML::Key << key << YAML::Value << value;
        }
    }
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

}  // namespace paft
