#include "template/jinja_eval.h"

#include "core/error.h"
#include "template/jinja_builtins.h"

#include <ctime>
#include <memory>

namespace paft::jinja {

namespace {

// Macros calling macros deeper than this are an error, not a stack overflow.
constexpr int kMaxCallDepth = 100;
// The sandbox's limit on range() (jinja2's MAX_RANGE).
constexpr int64_t kMaxRange = 100000;
// Statements a render may execute (each output, each loop iteration, ...): two nested loops of
// 100,000 stop here in a fraction of a second instead of running for hours; a chat template runs
// some tens of statements a message.
constexpr int64_t kMaxSteps = 1'000'000;

// raise_exception(msg) from the template: the message is the template author's.
struct TemplateRaised : RenderError {
    using RenderError::RenderError;
};

struct Scope;
using ScopePtr = std::shared_ptr<Scope>;

struct Scope {
    std::vector<std::pair<std::string, Value>> vars;
    ScopePtr                                   parent;

    const Value * lookup(const std::string & name) const {
        for (const Scope * s = this; s; s = s->parent.get()) {
            for (const auto & [k, v] : s->vars) {
                if (k == name) return &v;
            }
        }
        return nullptr;
    }
    void set(const std::string & name, Value value) {
        for (auto & [k, v] : vars) {
            if (k == name) {
                v = std::move(value);
                return;
            }
        }
        vars.emplace_back(name, std::move(value));
    }
};

ScopePtr child(const ScopePtr & parent) {
    auto s    = std::make_shared<Scope>();
    s->parent = parent;
    return s;
}

enum class Flow { Normal, Break, Continue };

class Evaluator {
public:
    Evaluator(const std::string & origin, UndefinedOutput undefined) : origin_(origin), undefined_(undefined) {}

    // A macro is kept in the scope it captures, and a namespace may hold itself: reference
    // cycles that would outlive the render, so they are cut when it ends.
    ~Evaluator() {
        for (const ScopePtr & scope : macro_scopes_) scope->vars.clear();
        for (const std::shared_ptr<Dict> & ns : namespaces_) ns->items.clear();
    }

    std::string run(const Body & body, const Dict & variables) {
        auto globals = std::make_shared<Scope>();
        add_globals(*globals);
        auto top = child(globals);
        for (const auto & [k, v] : variables.items) top->set(k.str, v);
        std::string out;
        try {
            exec(body, out, top);
        } catch (const TemplateRaised & e) {
            throw InputError(origin_ + ": " + e.what());
        } catch (const RenderError & e) {
            throw InputError(origin_ + ":" + std::to_string(line_) + ": " + e.what());
        }
        return out;
    }

private:
    // ---- globals ---------------------------------------------------------------------------

    void add_globals(Scope & scope) {
        scope.set("range", Value::function([](const CallArgs & args) { return range(args); }));
        scope.set("namespace", Value::function([this](const CallArgs & args) {
                      Value ns = Value::make_namespace(kwargs_dict(args));
                      namespaces_.push_back(ns.dict);
                      return ns;
                  }));
        scope.set("dict", Value::function([](const CallArgs & args) { return Value::make_dict(kwargs_dict(args)); }));
        scope.set("raise_exception", Value::function([](const CallArgs & args) -> Value {
                      const Value * msg = args.get(0, "message");
                      throw TemplateRaised(msg ? to_str(*msg) : "raise_exception() called");
                  }));
        scope.set("strftime_now", Value::function([](const CallArgs & args) {
                      const Value * fmt = args.get(0, "format");
                      if (!fmt || !fmt->is_string()) throw RenderError("strftime_now() needs a format string");
                      const std::time_t now = std::time(nullptr);
                      std::tm           local{};
                      localtime_r(&now, &local);
                      char buf[256];
                      const size_t n = std::strftime(buf, sizeof buf, fmt->str.c_str(), &local);
                      return Value::string(std::string(buf, n));
                  }));
    }

    static Value range(const CallArgs & args) {
        std::vector<int64_t> bounds;
        for (const Value & v : args.positional) {
            if (!v.is_integral()) throw RenderError("'" + type_name(v) + "' object cannot be interpreted as an integer");
            bounds.push_back(v.as_int());
        }
        if (bounds.empty() || bounds.size() > 3) throw RenderError("range expected 1 to 3 arguments");
        const int64_t start = bounds.size() > 1 ? bounds[0] : 0;
        const int64_t stop  = bounds.size() > 1 ? bounds[1] : bounds[0];
        const int64_t step  = bounds.size() > 2 ? bounds[2] : 1;
        if (step == 0) throw RenderError("range() arg 3 must not be zero");
        List items;
        for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
            if (static_cast<int64_t>(items.size()) >= kMaxRange) {
                throw RenderError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
            }
            items.push_back(Value::integer(k));
        }
        return Value::make_list(std::move(items));
    }

    // namespace(...) and dict(...): an optional mapping, then keyword arguments.
    static Dict kwargs_dict(const CallArgs & args) {
        Dict d;
        if (!args.positional.empty()) {
            const Value & base = args.positional[0];
            if (!base.is_dict() || args.positional.size() > 1) throw RenderError("expected at most one mapping argument");
            d = *base.dict;
        }
        for (const auto & [k, v] : args.keyword) d.set(Value::string(k), v);
        return d;
    }

    // ---- statements ------------------------------------------------------------------------

    Flow exec(const Body & body, std::string & out, const ScopePtr & scope) {
        for (const NodePtr & node : body) {
            const Flow flow = exec_node(*node, out, scope);
            if (flow != Flow::Normal) return flow;
        }
        return Flow::Normal;
    }

    Flow exec_node(const Node & node, std::string & out, const ScopePtr & scope) {
        line_ = node.line;
        count_step();
        if (out.size() > kMaxBuiltBytes) {
            throw RenderError("the template's output passed " + std::to_string(kMaxBuiltBytes >> 20) + " MiB");
        }
        switch (node.kind) {
        case Node::Kind::Text: out += node.text; return Flow::Normal;
        case Node::Kind::Output: {
            const Value v = eval(*node.expr, scope);
            if (v.is_undefined() && undefined_ == UndefinedOutput::Error) undefined_error(v);
            out += to_str(v);
            return Flow::Normal;
        }
        case Node::Kind::If:
            return exec(truthy(eval(*node.expr, scope)) ? node.body : node.else_body, out, scope);
        case Node::Kind::For: exec_for(node, out, scope); return Flow::Normal;
        case Node::Kind::Set: exec_set(node, eval(*node.expr, scope), scope); return Flow::Normal;
        case Node::Kind::SetBlock: {
            std::string text;
            exec(node.body, text, child(scope));
            scope->set(node.targets[0], filtered(node, std::move(text), scope));
            return Flow::Normal;
        }
        case Node::Kind::Macro: scope->set(node.text, make_macro(node, scope)); return Flow::Normal;
        case Node::Kind::CallBlock: out += to_str(exec_call_block(node, scope)); return Flow::Normal;
        case Node::Kind::FilterBlock: {
            std::string text;
            exec(node.body, text, child(scope));
            out += to_str(filtered(node, std::move(text), scope));
            return Flow::Normal;
        }
        case Node::Kind::Break: return Flow::Break;
        case Node::Kind::Continue: return Flow::Continue;
        case Node::Kind::With: {
            // The values are computed in the enclosing scope, as jinja2 does.
            auto inner = child(scope);
            for (const auto & [name, expr] : node.params) inner->set(name, eval(*expr, scope));
            return exec(node.body, out, inner);
        }
        case Node::Kind::Passthrough: return exec(node.body, out, scope);
        }
        return Flow::Normal;
    }

    // A block's text through the node's filter chain (when it has one).
    Value filtered(const Node & node, std::string text, const ScopePtr & scope) {
        if (!node.expr) return Value::string(std::move(text));
        block_input_ = Value::string(std::move(text));
        return eval(*node.expr, scope);
    }

    void assign(const std::vector<std::string> & targets, const Value & value, Scope & scope) {
        if (targets.size() == 1) {
            scope.set(targets[0], value);
            return;
        }
        const List items = iterate(value);
        if (items.size() != targets.size()) {
            throw RenderError(items.size() > targets.size() ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                                                            : "not enough values to unpack (expected " + std::to_string(targets.size()) +
                                                                  ", got " + std::to_string(items.size()) + ")");
        }
        for (size_t k = 0; k < targets.size(); ++k) scope.set(targets[k], items[k]);
    }

    void exec_set(const Node & node, const Value & value, const ScopePtr & scope) {
        if (node.attr.empty()) {
            assign(node.targets, value, *scope);
            return;
        }
        const Value * ns = scope->lookup(node.targets[0]);
        if (!ns || ns->kind != Value::Kind::Namespace) throw RenderError("cannot assign attribute on non-namespace object");
        ns->dict->set(Value::string(node.attr), value);
    }

    void count_step() {
        if (++steps_ > kMaxSteps) {
            throw RenderError("the template ran more than " + std::to_string(kMaxSteps) + " statements (loops too long?)");
        }
    }

    void exec_for(const Node & node, std::string & out, const ScopePtr & scope) {
        List items = iterate(eval(*node.expr, scope));
        if (node.cond) {
            List kept;
            for (const Value & item : items) {
                auto filter_scope = child(scope);
                assign(node.targets, item, *filter_scope);
                if (truthy(eval(*node.cond, filter_scope))) kept.push_back(item);
            }
            items = std::move(kept);
        }
        if (items.empty()) {
            exec(node.else_body, out, child(scope));
            return;
        }
        const int64_t n = static_cast<int64_t>(items.size());
        for (int64_t k = 0; k < n; ++k) {
            // Each iteration starts afresh: a `set` in one is not seen by the next (jinja2).
            count_step();  // an empty body too
            auto loop_scope = child(scope);
            assign(node.targets, items[static_cast<size_t>(k)], *loop_scope);
            loop_scope->set("loop", loop_value(items, k));
            if (exec(node.body, out, loop_scope) == Flow::Break) break;
        }
    }

    static Value loop_value(const List & items, int64_t k) {
        const int64_t n = static_cast<int64_t>(items.size());
        Dict          d;
        auto          put = [&](const char * key, Value v) { d.items.emplace_back(Value::string(key), std::move(v)); };
        put("index", Value::integer(k + 1));
        put("index0", Value::integer(k));
        put("revindex", Value::integer(n - k));
        put("revindex0", Value::integer(n - k - 1));
        put("first", Value::boolean(k == 0));
        put("last", Value::boolean(k == n - 1));
        put("length", Value::integer(n));
        put("depth", Value::integer(1));
        put("depth0", Value::integer(0));
        put("previtem", k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined("there is no previous item"));
        put("nextitem", k < n - 1 ? items[static_cast<size_t>(k + 1)] : Value::undefined("there is no next item"));
        put("cycle", Value::function([k](const CallArgs & args) {
                if (args.positional.empty()) throw RenderError("no items for cycling given");
                return args.positional[static_cast<size_t>(k) % args.positional.size()];
            }));
        return Value::make_dict(std::move(d));
    }

    // ---- macros ----------------------------------------------------------------------------

    Value make_macro(const Node & node, const ScopePtr & defined_in) {
        macro_scopes_.push_back(defined_in);
        const Node * macro = &node;
        return Value::function([this, macro, defined_in](const CallArgs & args) { return call_macro(*macro, defined_in, args); });
    }

    Value call_macro(const Node & macro, const ScopePtr & defined_in, const CallArgs & args) {
        if (args.positional.size() > macro.params.size()) {
            throw RenderError("macro '" + macro.text + "' takes not more than " + std::to_string(macro.params.size()) + " argument(s)");
        }
        if (++call_depth_ > kMaxCallDepth) throw RenderError("macro calls nested too deeply (more than " + std::to_string(kMaxCallDepth) + ")");
        auto scope = child(defined_in);
        for (const auto & keyword : args.keyword) {
            const std::string & name  = keyword.first;
            const bool          known = name == "caller" ||
                               std::any_of(macro.params.begin(), macro.params.end(), [&](const auto & p) { return p.first == name; });
            if (!known) throw RenderError("macro '" + macro.text + "' takes no keyword argument '" + name + "'");
        }
        for (size_t k = 0; k < macro.params.size(); ++k) {
            const auto & [name, def] = macro.params[k];
            const Value * given      = args.get(k, name);
            scope->set(name, given ? *given : def ? eval(*def, scope) : Value::undefined("parameter '" + name + "' was not provided"));
        }
        if (const Value * caller = args.get(SIZE_MAX, "caller")) scope->set("caller", *caller);
        std::string out;
        const int   line = line_;
        exec(macro.body, out, scope);
        line_ = line;
        --call_depth_;
        return Value::string(std::move(out));
    }

    Value exec_call_block(const Node & node, const ScopePtr & scope) {
        const Expr & call   = *node.expr;
        Value        callee = eval(*call.children[0], scope);
        CallArgs     args   = eval_args(call, scope);
        const Body * body   = &node.body;
        args.keyword.emplace_back("caller", Value::function([this, body, scope](const CallArgs &) {
                                      std::string text;
                                      exec(*body, text, child(scope));
                                      return Value::string(std::move(text));
                                  }));
        return invoke(callee, args);
    }

    // ---- expressions -----------------------------------------------------------------------

    CallArgs eval_args(const Expr & e, const ScopePtr & scope) {
        CallArgs args;
        for (size_t k = 1; k < e.children.size(); ++k) args.positional.push_back(eval(*e.children[k], scope));
        for (const auto & [name, value] : e.kwargs) args.keyword.emplace_back(name, eval(*value, scope));
        return args;
    }

    static Value invoke(const Value & callee, const CallArgs & args) {
        if (callee.is_undefined()) undefined_error(callee);
        if (callee.kind != Value::Kind::Function) throw RenderError("'" + type_name(callee) + "' object is not callable");
        return (*callee.fn)(args);
    }

    std::optional<int64_t> slice_bound(const ExprPtr & e, const ScopePtr & scope) {
        if (!e) return std::nullopt;
        const Value v = eval(*e, scope);
        if (v.is_none()) return std::nullopt;
        if (!v.is_integral()) throw RenderError("slice indices must be integers or None");
        return v.as_int();
    }

    Value eval(const Expr & e, const ScopePtr & scope) {
        line_ = e.line;
        switch (e.kind) {
        case Expr::Kind::Literal: return e.literal;
        case Expr::Kind::Name: {
            const Value * v = scope->lookup(e.name);
            return v ? *v : Value::undefined("'" + e.name + "' is undefined");
        }
        case Expr::Kind::List:
        case Expr::Kind::Tuple: {
            List items;
            for (const ExprPtr & c : e.children) items.push_back(eval(*c, scope));
            return e.kind == Expr::Kind::List ? Value::make_list(std::move(items)) : Value::make_tuple(std::move(items));
        }
        case Expr::Kind::Dict: {
            Dict d;
            for (size_t k = 0; k + 1 < e.children.size(); k += 2) d.set(eval(*e.children[k], scope), eval(*e.children[k + 1], scope));
            return Value::make_dict(std::move(d));
        }
        case Expr::Kind::Attr: return get_attr(eval(*e.children[0], scope), e.name);
        case Expr::Kind::Item: {
            const Value obj = eval(*e.children[0], scope);
            return get_item(obj, eval(*e.children[1], scope));
        }
        case Expr::Kind::Slice: {
            const Value obj   = eval(*e.children[0], scope);
            const auto  start = slice_bound(e.children[1], scope);
            const auto  stop  = slice_bound(e.children[2], scope);
            return get_slice(obj, start, stop, slice_bound(e.children[3], scope));
        }
        case Expr::Kind::Call: {
            const Value callee = eval(*e.children[0], scope);
            const CallArgs args = eval_args(e, scope);
            line_ = e.line;
            return invoke(callee, args);
        }
        case Expr::Kind::Filter: {
            const Value    input = e.children[0] ? eval(*e.children[0], scope) : block_input_;
            const CallArgs args  = eval_args(e, scope);
            line_ = e.line;
            return apply_filter(e.name, input, args);
        }
        case Expr::Kind::Test: {
            const Value    input = eval(*e.children[0], scope);
            const CallArgs args  = eval_args(e, scope);
            line_ = e.line;
            return Value::boolean(apply_test(e.name, input, args) != e.negate);
        }
        case Expr::Kind::Unary: return unary_op(e.name, eval(*e.children[0], scope));
        case Expr::Kind::Binary: {
            const Value a = eval(*e.children[0], scope);
            const Value b = eval(*e.children[1], scope);
            line_ = e.line;
            return binary_op(e.name, a, b);
        }
        case Expr::Kind::Compare: {
            // a < b < c is a < b and b < c, each operand evaluated once.
            Value left = eval(*e.children[0], scope);
            for (size_t k = 0; k < e.ops.size(); ++k) {
                Value right = eval(*e.children[k + 1], scope);
                line_       = e.line;
                if (!truthy(binary_op(e.ops[k], left, right))) return Value::boolean(false);
                left = std::move(right);
            }
            return Value::boolean(true);
        }
        case Expr::Kind::And: {
            Value a = eval(*e.children[0], scope);
            return truthy(a) ? eval(*e.children[1], scope) : a;
        }
        case Expr::Kind::Or: {
            Value a = eval(*e.children[0], scope);
            return truthy(a) ? a : eval(*e.children[1], scope);
        }
        case Expr::Kind::Not: return Value::boolean(!truthy(eval(*e.children[0], scope)));
        case Expr::Kind::Cond:
            if (truthy(eval(*e.children[0], scope))) return eval(*e.children[1], scope);
            if (e.children[2]) return eval(*e.children[2], scope);
            return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                    " evaluated to false and no else section was defined.");
        }
        return Value::undefined("");
    }

    const std::string & origin_;
    const UndefinedOutput undefined_;
    int                 line_       = 1;
    int                 call_depth_ = 0;
    int64_t             steps_      = 0;
    Value               block_input_;
    std::vector<ScopePtr>              macro_scopes_;
    std::vector<std::shared_ptr<Dict>> namespaces_;
};

}  // namespace

std::string render(const Body & body, const Dict & variables, const std::string & origin, UndefinedOutput undefined) {
    return Evaluator(origin, undefined).run(body, variables);
}

}  // namespace paft::jinja
