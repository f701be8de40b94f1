#include "template/jinja_parser.h"

#include "core/error.h"
#include "template/jinja_builtins.h"
#include "template/jinja_lexer.h"

#include <initializer_list>

namespace paft::jinja {

namespace {

// Deeper nesting (of blocks, brackets and operator chains) is an error rather than a risk of
// overflowing the stack while parsing, rendering or freeing the tree.
constexpr int kMaxDepth = 200;

using Type = Token::Type;

class Parser {
public:
    Parser(std::vector<Token> tokens, const std::string & origin) : tokens_(std::move(tokens)), origin_(origin) {}

    Body parse() { return parse_body({}); }

private:
    // ---- token stream ----------------------------------------------------------------------

    const Token & peek(size_t ahead = 0) const {
        const size_t at = pos_ + ahead;
        return at < tokens_.size() ? tokens_[at] : tokens_.back();
    }
    const Token & next() {
        const Token & t = peek();
        if (pos_ < tokens_.size() - 1) ++pos_;
        return t;
    }
    bool is_op(std::string_view op, size_t ahead = 0) const {
        return peek(ahead).type == Type::Op && peek(ahead).text == op;
    }
    bool is_name(std::string_view name, size_t ahead = 0) const {
        return peek(ahead).type == Type::Name && peek(ahead).text == name;
    }
    bool accept_op(std::string_view op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool accept_name(std::string_view name) {
        if (!is_name(name)) return false;
        next();
        return true;
    }

    [[noreturn]] void fail(const std::string & what, int line = 0) const {
        throw InputError(origin_ + ":" + std::to_string(line ? line : peek().line) + ": template syntax error: " + what);
    }

    std::string describe(const Token & t) const {
        switch (t.type) {
        case Type::End: return "end of template";
        case Type::BlockEnd: return "end of statement block";
        case Type::VarEnd: return "end of print statement";
        case Type::Text: return "template text";
        case Type::String: return "string";
        default: return "'" + t.text + "'";
        }
    }

    void expect_op(std::string_view op) {
        if (!accept_op(op)) fail("expected '" + std::string(op) + "', got " + describe(peek()));
    }
    std::string expect_identifier() {
        if (peek().type != Type::Name) fail("expected a name, got " + describe(peek()));
        return next().text;
    }
    void expect(Type type, const char * what) {
        if (peek().type != type) fail(std::string("expected ") + what + ", got " + describe(peek()));
        next();
    }

    // ---- nesting limit ---------------------------------------------------------------------

    struct Depth {
        explicit Depth(Parser & p) : parser(p), saved(p.depth_) {}
        ~Depth() { parser.depth_ = saved; }
        void deeper() {
            if (++parser.depth_ > kMaxDepth) parser.fail("nesting too deep (more than " + std::to_string(kMaxDepth) + " levels)");
        }
        Parser & parser;
        int      saved;
    };

    // ---- statements ------------------------------------------------------------------------

    // Parses nodes until a block tag whose name is in `ends` (left unconsumed: the current
    // token is that name) or, with no `ends`, until the end of the template.
    Body parse_body(std::initializer_list<std::string_view> ends) {
        Depth depth(*this);
        depth.deeper();
        Body body;
        for (;;) {
            const Token & t = peek();
            if (t.type == Type::End) {
                if (ends.size() == 0) return body;
                std::string names;
                for (std::string_view end : ends) names += (names.empty() ? "'" : " or '") + std::string(end) + "'";
                fail("unexpected end of template, expected " + names);
            }
            if (t.type == Type::Text) {
                auto node  = make_node(Node::Kind::Text);
                node->text = next().text;
                body.push_back(std::move(node));
            } else if (t.type == Type::VarBegin) {
                next();
                auto node  = make_node(Node::Kind::Output);
                node->expr = parse_tuple();
                expect(Type::VarEnd, "end of print statement");
                body.push_back(std::move(node));
            } else {
                next();  // BlockBegin
                for (std::string_view end : ends) {
                    if (is_name(end)) return body;
                }
                body.push_back(parse_statement());
            }
        }
    }

    NodePtr make_node(Node::Kind kind) const {
        auto node  = std::make_unique<Node>();
        node->kind = kind;
        node->line = peek().line;
        return node;
    }

    // After the name of an end tag: the rest of the tag.
    void end_tag(std::string_view name) {
        if (!accept_name(name)) fail("expected '" + std::string(name) + "', got " + describe(peek()));
        expect(Type::BlockEnd, "end of statement block");
    }

    NodePtr parse_statement() {
        const Token & t = peek();
        if (t.type != Type::Name) fail("tag name expected");
        const std::string name = t.text;
        if (name == "if") return parse_if();
        if (name == "for") return parse_for();
        if (name == "set") return parse_set();
        if (name == "macro") return parse_macro();
        if (name == "call") return parse_call_block();
        if (name == "filter") return parse_filter_block();
        if (name == "generation") return parse_generation();
        if (name == "with") return parse_with();
        if (name == "break" || name == "continue") {
            if (loops_ == 0) fail("'" + name + "' outside of a loop");
            auto node = make_node(name == "break" ? Node::Kind::Break : Node::Kind::Continue);
            next();
            expect(Type::BlockEnd, "end of statement block");
            return node;
        }
        fail("unknown tag '" + name + "'");
    }

    NodePtr parse_if() {
        auto node = make_node(Node::Kind::If);
        next();  // if / elif
        node->expr = parse_tuple();
        expect(Type::BlockEnd, "end of statement block");
        node->body = parse_body({"elif", "else", "endif"});
        if (is_name("elif")) {
            node->else_body.push_back(parse_if());
            return node;
        }
        if (accept_name("else")) {
            expect(Type::BlockEnd, "end of statement block");
            node->else_body = parse_body({"endif"});
        }
        end_tag("endif");
        return node;
    }

    std::vector<std::string> parse_targets() {
        std::vector<std::string> names;
        const bool paren = accept_op("(");
        do {
            if (paren && is_op(")")) break;
            names.push_back(expect_identifier());
        } while (accept_op(","));
        if (paren) expect_op(")");
        return names;
    }

    NodePtr parse_for() {
        auto node = make_node(Node::Kind::For);
        next();
        node->targets = parse_targets();
        if (!accept_name("in")) fail("expected 'in', got " + describe(peek()));
        node->expr = parse_tuple(false);
        if (accept_name("if")) node->cond = parse_expression();
        if (is_name("recursive")) fail("recursive loops are not supported");
        expect(Type::BlockEnd, "end of statement block");
        ++loops_;
        node->body = parse_body({"endfor", "else"});
        --loops_;
        if (accept_name("else")) {
            expect(Type::BlockEnd, "end of statement block");
            node->else_body = parse_body({"endfor"});
        }
        end_tag("endfor");
        return node;
    }

    NodePtr parse_set() {
        auto node = make_node(Node::Kind::Set);
        next();
        if (peek().type == Type::Name && is_op(".", 1)) {
            node->targets.push_back(next().text);
            next();
            node->attr = expect_identifier();
        } else {
            node->targets = parse_targets();
        }
        if (accept_op("=")) {
            node->expr = parse_tuple();
            expect(Type::BlockEnd, "end of statement block");
            return node;
        }
        if (node->targets.size() != 1 || !node->attr.empty()) fail("expected '='");
        node->kind = Node::Kind::SetBlock;
        if (is_op("|")) node->expr = parse_filter_chain();
        expect(Type::BlockEnd, "end of statement block");
        node->body = parse_body({"endset"});
        end_tag("endset");
        return node;
    }

    NodePtr parse_macro() {
        auto node = make_node(Node::Kind::Macro);
        next();
        node->text = expect_identifier();
        expect_op("(");
        while (!is_op(")")) {
            if (!node->params.empty()) expect_op(",");
            std::string param = expect_identifier();
            ExprPtr     def;
            if (accept_op("=")) def = parse_expression();
            node->params.emplace_back(std::move(param), std::move(def));
        }
        next();
        expect(Type::BlockEnd, "end of statement block");
        const int loops = loops_;
        loops_          = 0;  // a loop around a macro's definition is not a loop inside it
        node->body      = parse_body({"endmacro"});
        loops_          = loops;
        end_tag("endmacro");
        return node;
    }

    NodePtr parse_call_block() {
        auto node = make_node(Node::Kind::CallBlock);
        next();
        node->expr = parse_expression();
        if (node->expr->kind != Expr::Kind::Call) fail("expected a call", node->line);
        expect(Type::BlockEnd, "end of statement block");
        node->body = parse_body({"endcall"});
        end_tag("endcall");
        return node;
    }

    NodePtr parse_filter_block() {
        auto node = make_node(Node::Kind::FilterBlock);
        node->expr = parse_filter_chain();
        expect(Type::BlockEnd, "end of statement block");
        node->body = parse_body({"endfilter"});
        end_tag("endfilter");
        return node;
    }

    // `with a = 1, b = 2`: the names hold only inside the block.
    NodePtr parse_with() {
        auto node = make_node(Node::Kind::With);
        next();
        while (peek().type != Type::BlockEnd) {
            if (!node->params.empty()) expect_op(",");
            std::string name = expect_identifier();
            expect_op("=");
            node->params.emplace_back(std::move(name), parse_expression());
        }
        next();
        node->body = parse_body({"endwith"});
        end_tag("endwith");
        return node;
    }

    NodePtr parse_generation() {
        auto node = make_node(Node::Kind::Passthrough);
        next();
        expect(Type::BlockEnd, "end of statement block");
        node->body = parse_body({"endgeneration"});
        end_tag("endgeneration");
        return node;
    }

    // `filter a | b(args)` in a filter block or `set x | a`: filters over the block's text,
    // marked by a null input. The current token is the one before the first filter name.
    ExprPtr parse_filter_chain() {
        ExprPtr chain;
        do {
            next();  // `filter` or `|`
            chain = parse_filter(std::move(chain));
        } while (is_op("|"));
        return chain;
    }

    // ---- expressions -----------------------------------------------------------------------

    ExprPtr make_expr(Expr::Kind kind, int line) const {
        auto e  = std::make_unique<Expr>();
        e->kind = kind;
        e->line = line;
        return e;
    }

    ExprPtr make_binary(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right, int line) const {
        auto e  = make_expr(kind, line);
        e->name = std::move(op);
        e->children.push_back(std::move(left));
        e->children.push_back(std::move(right));
        return e;
    }

    // An expression or an unparenthesised tuple (`a, b`).
    ExprPtr parse_tuple(bool with_cond = true) {
        const int line = peek().line;
        ExprPtr   first = with_cond ? parse_expression() : parse_or();
        if (!is_op(",")) return first;
        auto tuple = make_expr(Expr::Kind::Tuple, line);
        tuple->children.push_back(std::move(first));
        while (accept_op(",")) {
            if (peek().type == Type::BlockEnd || peek().type == Type::VarEnd || is_op(")")) break;
            tuple->children.push_back(with_cond ? parse_expression() : parse_or());
        }
        return tuple;
    }

    ExprPtr parse_expression() {
        Depth depth(*this);
        depth.deeper();
        const int line = peek().line;
        ExprPtr   expr = parse_or();
        while (accept_name("if")) {
            depth.deeper();
            auto cond = make_expr(Expr::Kind::Cond, line);
            cond->children.push_back(parse_or());
            cond->children.push_back(std::move(expr));
            cond->children.push_back(accept_name("else") ? parse_expression() : nullptr);
            expr = std::move(cond);
        }
        return expr;
    }

    ExprPtr parse_or() {
        Depth   depth(*this);
        ExprPtr left = parse_and();
        while (is_name("or")) {
            depth.deeper();
            const int line = next().line;
            left           = make_binary(Expr::Kind::Or, "or", std::move(left), parse_and(), line);
        }
        return left;
    }

    ExprPtr parse_and() {
        Depth   depth(*this);
        ExprPtr left = parse_not();
        while (is_name("and")) {
            depth.deeper();
            const int line = next().line;
            left           = make_binary(Expr::Kind::And, "and", std::move(left), parse_not(), line);
        }
        return left;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            Depth depth(*this);
            depth.deeper();
            auto e = make_expr(Expr::Kind::Not, next().line);
            e->children.push_back(parse_not());
            return e;
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        Depth   depth(*this);
        const int line = peek().line;
        ExprPtr left = parse_math1();
        ExprPtr compare;
        for (;;) {
            std::string op;
            if (peek().type == Type::Op && (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
                op = next().text;
            } else if (accept_name("in")) {
                op = "in";
            } else if (is_name("not") && is_name("in", 1)) {
                next();
                next();
                op = "not in";
            } else {
                return compare ? std::move(compare) : std::move(left);
            }
            depth.deeper();
            if (!compare) {
                compare = make_expr(Expr::Kind::Compare, line);
                compare->children.push_back(std::move(left));
            }
            compare->ops.push_back(std::move(op));
            compare->children.push_back(parse_math1());
        }
    }

    ExprPtr parse_math1() {
        Depth   depth(*this);
        ExprPtr left = parse_concat();
        while (is_op("+") || is_op("-")) {
            depth.deeper();
            const Token & t  = next();
            const int     line = t.line;
            std::string   op   = t.text;
            left               = make_binary(Expr::Kind::Binary, op, std::move(left), parse_concat(), line);
        }
        return left;
    }

    ExprPtr parse_concat() {
        Depth   depth(*this);
        ExprPtr left = parse_math2();
        while (is_op("~")) {
            depth.deeper();
            const int line = next().line;
            left           = make_binary(Expr::Kind::Binary, "~", std::move(left), parse_math2(), line);
        }
        return left;
    }

    ExprPtr parse_math2() {
        Depth   depth(*this);
        ExprPtr left = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            depth.deeper();
            const Token & t  = next();
            const int     line = t.line;
            std::string   op   = t.text;
            left               = make_binary(Expr::Kind::Binary, op, std::move(left), parse_pow(), line);
        }
        return left;
    }

    ExprPtr parse_pow() {
        Depth   depth(*this);
        ExprPtr left = parse_unary(true);
        while (is_op("**")) {
            depth.deeper();
            const int line = next().line;
            left           = make_binary(Expr::Kind::Binary, "**", std::move(left), parse_unary(true), line);
        }
        return left;
    }

    ExprPtr parse_unary(bool with_filter) {
        Depth depth(*this);
        depth.deeper();
        ExprPtr node;
        if (is_op("-") || is_op("+")) {
            const Token & t = next();
            node            = make_expr(Expr::Kind::Unary, t.line);
            node->name      = t.text;
            node->children.push_back(parse_unary(false));
        } else {
            node = parse_primary();
        }
        node = parse_postfix(std::move(node), depth);
        if (with_filter) node = parse_filter_expr(std::move(node), depth);
        return node;
    }

    ExprPtr parse_primary() {
        const Token & t = peek();
        switch (t.type) {
        case Type::Name: {
            next();
            auto e = make_expr(Expr::Kind::Literal, t.line);
            if (t.text == "true" || t.text == "True") e->literal = Value::boolean(true);
            else if (t.text == "false" || t.text == "False") e->literal = Value::boolean(false);
            else if (t.text == "none" || t.text == "None") e->literal = Value::none();
            else {
                e->kind = Expr::Kind::Name;
                e->name = t.text;
            }
            return e;
        }
        case Type::String: {
            auto        e = make_expr(Expr::Kind::Literal, t.line);
            std::string text;
            while (peek().type == Type::String) text += next().text;  // adjacent literals join
            e->literal = Value::string(std::move(text));
            return e;
        }
        case Type::Int: {
            auto e     = make_expr(Expr::Kind::Literal, t.line);
            e->literal = Value::integer(next().int_value);
            return e;
        }
        case Type::Float: {
            auto e     = make_expr(Expr::Kind::Literal, t.line);
            e->literal = Value::number(next().float_value);
            return e;
        }
        default: break;
        }
        if (is_op("(")) return parse_paren();
        if (is_op("[")) return parse_list();
        if (is_op("{")) return parse_dict();
        fail("unexpected " + describe(t));
    }

    ExprPtr parse_paren() {
        const int line = next().line;
        if (accept_op(")")) return make_expr(Expr::Kind::Tuple, line);
        ExprPtr first = parse_expression();
        if (accept_op(")")) return first;
        auto tuple = make_expr(Expr::Kind::Tuple, line);
        tuple->children.push_back(std::move(first));
        while (accept_op(",")) {
            if (is_op(")")) break;
            tuple->children.push_back(parse_expression());
        }
        expect_op(")");
        return tuple;
    }

    ExprPtr parse_list() {
        auto list = make_expr(Expr::Kind::List, next().line);
        while (!is_op("]")) {
            if (!list->children.empty()) {
                expect_op(",");
                if (is_op("]")) break;
            }
            list->children.push_back(parse_expression());
        }
        next();
        return list;
    }

    ExprPtr parse_dict() {
        auto dict = make_expr(Expr::Kind::Dict, next().line);
        while (!is_op("}")) {
            if (!dict->children.empty()) {
                expect_op(",");
                if (is_op("}")) break;
            }
            dict->children.push_back(parse_expression());
            expect_op(":");
            dict->children.push_back(parse_expression());
        }
        next();
        return dict;
    }

    ExprPtr parse_postfix(ExprPtr node, Depth & depth) {
        for (;;) {
            if (is_op(".") || is_op("[")) {
                depth.deeper();
                node = parse_subscript(std::move(node));
            } else if (is_op("(")) {
                depth.deeper();
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr node) {
        const Token & t = next();
        if (t.text == ".") {
            const Token & attr = next();
            if (attr.type == Type::Name) {
                auto e  = make_expr(Expr::Kind::Attr, t.line);
                e->name = attr.text;
                e->children.push_back(std::move(node));
                return e;
            }
            if (attr.type != Type::Int) fail("expected name or number after '.'", t.line);
            auto e = make_expr(Expr::Kind::Item, t.line);
            e->children.push_back(std::move(node));
            auto index     = make_expr(Expr::Kind::Literal, t.line);
            index->literal = Value::integer(attr.int_value);
            e->children.push_back(std::move(index));
            return e;
        }
        // `[`: an index, or a slice with up to three optional parts.
        ExprPtr parts[3];
        int     colons = 0;
        if (!is_op(":")) parts[0] = parse_expression();
        while (colons < 2 && accept_op(":")) {
            ++colons;
            if (!is_op(":") && !is_op("]")) parts[colons] = parse_expression();
        }
        expect_op("]");
        auto e = make_expr(colons ? Expr::Kind::Slice : Expr::Kind::Item, t.line);
        e->children.push_back(std::move(node));
        e->children.push_back(std::move(parts[0]));
        if (colons) {
            e->children.push_back(std::move(parts[1]));
            e->children.push_back(std::move(parts[2]));
        }
        return e;
    }

    // Call arguments after `(`: positional then keyword (name=value).
    void parse_args(Expr & call) {
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) {
                expect_op(",");
                if (is_op(")")) break;
            }
            first = false;
            if (peek().type == Type::Name && is_op("=", 1)) {
                std::string name = next().text;
                next();
                call.kwargs.emplace_back(std::move(name), parse_expression());
            } else {
                if (!call.kwargs.empty()) fail("positional argument after keyword argument");
                call.children.push_back(parse_expression());
            }
        }
        next();
    }

    ExprPtr parse_call(ExprPtr callee) {
        auto call = make_expr(Expr::Kind::Call, peek().line);
        call->children.push_back(std::move(callee));
        parse_args(*call);
        return call;
    }

    // `| name`, `| name(args)`; `input` is null in filter blocks.
    ExprPtr parse_filter(ExprPtr input) {
        auto filter  = make_expr(Expr::Kind::Filter, peek().line);
        filter->name = expect_identifier();
        // jinja2 checks filter and test names when it compiles the template.
        if (!is_filter(filter->name)) fail("No filter named '" + filter->name + "'.", filter->line);
        filter->children.push_back(std::move(input));
        if (is_op("(")) parse_args(*filter);
        return filter;
    }

    ExprPtr parse_filter_expr(ExprPtr node, Depth & depth) {
        for (;;) {
            if (is_op("|")) {
                depth.deeper();
                next();
                node = parse_filter(std::move(node));
            } else if (is_name("is")) {
                depth.deeper();
                node = parse_test(std::move(node));
            } else if (is_op("(")) {
                depth.deeper();
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_test(ExprPtr node) {
        auto test = make_expr(Expr::Kind::Test, next().line);
        test->negate = accept_name("not");
        test->name   = expect_identifier();
        if (!is_test(test->name)) fail("No test named '" + test->name + "'.", test->line);
        test->children.push_back(std::move(node));
        const Token & t = peek();
        if (is_op("(")) {
            parse_args(*test);
        } else if ((t.type == Type::Name || t.type == Type::String || t.type == Type::Int || t.type == Type::Float ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            // One argument without parentheses: `is divisibleby 3`.
            Depth depth(*this);
            test->children.push_back(parse_postfix(parse_primary(), depth));
        }
        return test;
    }

    std::vector<Token>  tokens_;
    const std::string & origin_;
    size_t              pos_   = 0;
    int                 depth_ = 0;
    int                 loops_ = 0;
};

}  // namespace

Body parse_template(std::string_view source, const std::string & origin, const Whitespace & ws) {
    return Parser(tokenize(source, origin, ws), origin).parse();
}

}  // namespace paft::jinja
