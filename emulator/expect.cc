#include "emulator/expect.h"

#include <cctype>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "emulator/float_value.h"

namespace patchlab::emulator {

struct Expect::Node {
  enum Kind { kConst, kRet, kFault, kHang, kReturned, kParam, kLen, kByte, kUnary, kBinary } kind;
  bool new_side = false;  // kRet kFault kHang kReturned
  int64_t value = 0;      // kConst
  int param = -1;         // kParam kLen kByte
  std::string op;         // kUnary kBinary
  std::shared_ptr<const Node> a, b;
};

namespace {

using Node = Expect::Node;
using NodePtr = std::shared_ptr<const Node>;

// Parsing, evaluating and destroying a tree all recurse along its height, so
// a hostile --expect (a megabyte of '(' or of "1+1+...") must stop at a bound
// instead of exhausting the stack. Real expressions are a few terms deep.
constexpr int kMaxNesting = 100;  // parentheses, unary operators, operator precedence levels
constexpr int kMaxNodes = 1000;   // operands and operators in all

class Parser {
 public:
  Parser(std::string_view text, const Signature& sig) : s_(text), sig_(sig) {}

  Result<NodePtr> ParseAll() {
    auto e = ParseBinary(0);
    if (!e) return e;
    Skip();
    if (Word() == "when") {
      pos_ += 4;
      auto cond = ParseBinary(0);
      if (!cond) return cond;
      e = Binary("&&", *cond, *e);
    }
    Skip();
    if (pos_ != s_.size()) return Error("unexpected text");
    return e;
  }

 private:
  std::unexpected<patchlab::Error> Error(std::string_view what) {
    // The column says where; a long expression is quoted by its start only.
    constexpr size_t kQuoted = 120;
    std::string_view shown = s_.substr(0, kQuoted);
    return Fail(ErrorCode::kInvalidArgument, "--expect '{}{}': column {}: {}", shown,
                s_.size() > kQuoted ? "..." : "", pos_ + 1, what);
  }
  void Skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  std::string_view Word() {
    size_t j = pos_;
    while (j < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_' || s_[j] == '.'))
      ++j;
    return s_.substr(pos_, j - pos_);
  }
  NodePtr Binary(std::string op, NodePtr a, NodePtr b) {
    auto n = NewNode();
    n->kind = Node::kBinary;
    n->op = std::move(op);
    n->a = std::move(a);
    n->b = std::move(b);
    return n;
  }
  static int Precedence(std::string_view op) {
    static constexpr std::pair<std::string_view, int> kOps[] = {
        {"||", 1}, {"&&", 2}, {"|", 3},  {"^", 4}, {"&", 5}, {"==", 6}, {"!=", 6}, {"<", 7},
        {"<=", 7}, {">", 7},  {">=", 7}, {"+", 9}, {"-", 9}, {"*", 10}, {"/", 10}, {"%", 10}};
    for (auto [o, p] : kOps)
      if (o == op) return p;
    return -1;
  }
  std::string PeekOp() {
    Skip();
    for (std::string_view two : {"||", "&&", "==", "!=", "<=", ">="}) {
      if (s_.substr(pos_, 2) == two) return std::string(two);
    }
    if (pos_ < s_.size() &&
        std::string_view("|^&<>+-*/%").find(s_[pos_]) != std::string_view::npos) {
      return std::string(1, s_[pos_]);
    }
    return "";
  }
  Result<NodePtr> ParseBinary(int min_prec) {
    auto lhs = ParseUnary();
    if (!lhs) return lhs;
    for (;;) {
      std::string op = PeekOp();
      int prec = op.empty() ? -1 : Precedence(op);
      if (prec < 0 || prec < min_prec) return lhs;
      pos_ += op.size();
      auto rhs = ParseBinary(prec + 1);
      if (!rhs) return rhs;
      lhs = Binary(op, *lhs, *rhs);
    }
  }
  std::shared_ptr<Node> NewNode() {
    ++nodes_;
    return std::make_shared<Node>();
  }
  // Every operand is parsed here, so this is where nesting is counted.
  Result<NodePtr> ParseUnary() {
    if (depth_ >= kMaxNesting) return Error(fmt::format("nested deeper than {}", kMaxNesting));
    if (nodes_ >= kMaxNodes) return Error(fmt::format("more than {} terms", kMaxNodes));
    ++depth_;
    auto n = ParseUnaryNested();
    --depth_;
    return n;
  }
  Result<NodePtr> ParseUnaryNested() {
    Skip();
    if (pos_ < s_.size() && (s_[pos_] == '!' || s_[pos_] == '-' || s_[pos_] == '~')) {
      std::string op(1, s_[pos_++]);
      auto a = ParseUnary();
      if (!a) return a;
      auto n = NewNode();
      n->kind = Node::kUnary;
      n->op = op;
      n->a = *a;
      return NodePtr(n);
    }
    return ParsePrimary();
  }
  int ParamIndex(std::string_view name) {
    for (size_t i = 0; i < sig_.params.size(); ++i)
      if (sig_.params[i].name == name) return static_cast<int>(i);
    return -1;
  }
  // A value: a parenthesised expression, a character or number literal, a
  // name of the outcome (ret, old.fault, ...), len(p), a parameter or a
  // byte of one (p[i]).
  Result<NodePtr> ParsePrimary() {
    Skip();
    if (pos_ >= s_.size()) return Error("expected a value");
    const char c = s_[pos_];
    if (c == '(') return ParseParenthesised();
    if (c == '\'') return ParseCharLiteral();
    if (std::isdigit(static_cast<unsigned char>(c))) return ParseNumber();
    std::string_view w = Word();
    if (w.empty()) return Error("expected a value");
    pos_ += w.size();
    if (auto named = OutcomeName(w)) return named;
    size_t after = pos_;
    while (after < s_.size() && s_[after] == ' ') ++after;
    if (w == "len" && after < s_.size() && s_[after] == '(') {
      pos_ = after + 1;
      return ParseLen();
    }
    return ParseParameter(w);
  }
  Result<NodePtr> ParseParenthesised() {
    ++nodes_;  // counted as a term towards kMaxNodes, as every value is
    ++pos_;
    auto e = ParseBinary(0);
    if (!e) return e;
    Skip();
    if (pos_ >= s_.size() || s_[pos_] != ')') return Error("expected ')'");
    ++pos_;
    return e;
  }
  Result<NodePtr> ParseCharLiteral() {
    if (pos_ + 2 >= s_.size() || s_[pos_ + 2] != '\'') return Error("bad character literal");
    auto n = NewNode();
    n->kind = Node::kConst;
    n->value = static_cast<unsigned char>(s_[pos_ + 1]);
    pos_ += 3;
    return NodePtr(n);
  }
  Result<NodePtr> ParseNumber() {
    size_t used = 0;
    std::string rest(s_.substr(pos_));
    auto n = NewNode();
    n->kind = Node::kConst;
    try {
      n->value = static_cast<int64_t>(std::stoull(rest, &used, 0));
    } catch (const std::out_of_range&) {
      return Error("number out of range (at most 64 bits)");
    }
    pos_ += used;
    return NodePtr(n);
  }
  // ret, old.ret, ..., true, false; nullptr for any other word.
  NodePtr OutcomeName(std::string_view w) {
    struct Named {
      std::string_view name;
      Node::Kind kind;
      bool new_side;
    };
    static constexpr Named kNames[] = {{"ret", Node::kRet, true},
                                       {"old.ret", Node::kRet, false},
                                       {"new.ret", Node::kRet, true},
                                       {"old.fault", Node::kFault, false},
                                       {"new.fault", Node::kFault, true},
                                       {"old.hang", Node::kHang, false},
                                       {"new.hang", Node::kHang, true},
                                       {"old.returned", Node::kReturned, false},
                                       {"new.returned", Node::kReturned, true}};
    for (const Named& nm : kNames) {
      if (nm.name == w) {
        auto n = NewNode();
        n->kind = nm.kind;
        n->new_side = nm.new_side;
        return n;
      }
    }
    if (w == "true" || w == "false") {
      auto n = NewNode();
      n->kind = Node::kConst;
      n->value = w == "true";
      return n;
    }
    return nullptr;
  }
  // After "len(": a pointer parameter's name and ')'.
  Result<NodePtr> ParseLen() {
    Skip();
    std::string_view p = Word();
    int idx = ParamIndex(p);
    if (idx < 0 || !sig_.params[idx].is_pointer)
      return Error(fmt::format("'{}' is not a pointer parameter", p));
    pos_ += p.size();
    Skip();
    if (pos_ >= s_.size() || s_[pos_] != ')') return Error("expected ')'");
    ++pos_;
    auto n = NewNode();
    n->kind = Node::kLen;
    n->param = idx;
    return NodePtr(n);
  }
  // A parameter named `w` (already read), or a byte of it: w[expr].
  Result<NodePtr> ParseParameter(std::string_view w) {
    int idx = ParamIndex(w);
    if (idx < 0) {
      std::string known =
          "ret, old.ret, new.ret, old.fault, new.fault, old.hang, new.hang, old.returned, "
          "new.returned";
      for (const Param& p : sig_.params) known += ", " + p.name;
      pos_ -= w.size();
      return Error(fmt::format("unknown name '{}' (known: {})", w, known));
    }
    auto n = NewNode();
    n->param = idx;
    Skip();
    if (pos_ < s_.size() && s_[pos_] == '[') {
      if (!sig_.params[idx].is_pointer && sig_.params[idx].kind != ValueKind::kRecord)
        return Error(fmt::format("'{}' is not a pointer or a struct", w));
      ++pos_;
      auto i = ParseBinary(0);
      if (!i) return i;
      Skip();
      if (pos_ >= s_.size() || s_[pos_] != ']') return Error("expected ']'");
      ++pos_;
      n->kind = Node::kByte;
      n->a = *i;
      return NodePtr(n);
    }
    n->kind = Node::kParam;
    return NodePtr(n);
  }

  std::string_view s_;
  const Signature& sig_;
  size_t pos_ = 0;
  int depth_ = 0;
  int nodes_ = 0;
};

// A floating-point value as the integer expressions see it: truncated
// toward 0, saturated, NaN as 0.
int64_t Truncated(FloatFormat format, const std::vector<uint8_t>& image) {
  if (image.size() < static_cast<size_t>(FloatBytes(format) == 16 ? 10 : FloatBytes(format)))
    return 0;
  const double v = DecodeFloat(format, image.data());
  if (std::isnan(v)) return 0;
  if (v >= 9.2e18) return INT64_MAX;
  if (v <= -9.2e18) return INT64_MIN;
  return static_cast<int64_t>(v);
}

int64_t Eval(const Node& n, const Signature& sig, const Input& in, const RunOutcome& o,
             const RunOutcome& nw) {
  const RunOutcome& side = n.new_side ? nw : o;
  switch (n.kind) {
    case Node::kConst:
      return n.value;
    case Node::kRet:
      if (sig.ret_kind == ValueKind::kFloat) return Truncated(sig.ret_format, side.ret_image);
      if (sig.ret_kind == ValueKind::kRecord) return 0;
      return sig.ret_width == 0
                 ? 0
                 : SignedValueOf(std::min(sig.ret_width, 8), sig.ret_signed, side.ret);
    case Node::kFault:
      return side.ending == Ending::kFault;
    case Node::kHang:
      return side.ending == Ending::kHang;
    case Node::kReturned:
      return side.ending == Ending::kReturned;
    case Node::kParam: {
      const Param& p = sig.params[n.param];
      const ArgValue& v = in.args[n.param];
      if (p.kind == ValueKind::kFloat) return Truncated(p.format, ArgImage(p, v, 0));
      if (p.kind == ValueKind::kRecord || p.kind == ValueKind::kFunction)
        return static_cast<int64_t>(v.value);
      return p.is_pointer ? !v.is_null : SignedValue(p, v.value);
    }
    case Node::kLen: {
      const ArgValue& v = in.args[n.param];
      return v.is_null ? 0 : static_cast<int64_t>(v.bytes.size());
    }
    case Node::kByte: {
      const ArgValue& v = in.args[n.param];
      int64_t i = Eval(*n.a, sig, in, o, nw);
      return (v.is_null || i < 0 || static_cast<uint64_t>(i) >= v.bytes.size()) ? 0 : v.bytes[i];
    }
    case Node::kUnary: {
      int64_t a = Eval(*n.a, sig, in, o, nw);
      if (n.op == "!") return !a;
      if (n.op == "-") return static_cast<int64_t>(0ull - static_cast<uint64_t>(a));
      return ~a;
    }
    case Node::kBinary: {
      if (n.op == "&&") return Eval(*n.a, sig, in, o, nw) && Eval(*n.b, sig, in, o, nw);
      if (n.op == "||") return Eval(*n.a, sig, in, o, nw) || Eval(*n.b, sig, in, o, nw);
      int64_t a = Eval(*n.a, sig, in, o, nw), b = Eval(*n.b, sig, in, o, nw);
      uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
      const std::string& op = n.op;
      if (op == "==") return a == b;
      if (op == "!=") return a != b;
      if (op == "<") return a < b;
      if (op == "<=") return a <= b;
      if (op == ">") return a > b;
      if (op == ">=") return a >= b;
      if (op == "+") return static_cast<int64_t>(ua + ub);
      if (op == "-") return static_cast<int64_t>(ua - ub);
      if (op == "*") return static_cast<int64_t>(ua * ub);
      if (op == "/") return (b == 0 || (b == -1 && a == INT64_MIN)) ? 0 : a / b;
      if (op == "%") return (b == 0 || (b == -1 && a == INT64_MIN)) ? 0 : a % b;
      if (op == "&") return a & b;
      if (op == "|") return a | b;
      if (op == "^") return a ^ b;
      return 0;
    }
  }
  return 0;
}

}  // namespace

Result<Expect> Expect::Parse(std::string_view text, const Signature& sig) {
  Parser p(text, sig);
  auto root = p.ParseAll();
  if (!root) return std::unexpected(root.error());
  Expect e;
  e.text_ = std::string(text);
  e.root_ = *root;
  e.sig_ = std::make_shared<const Signature>(sig);
  return e;
}

bool Expect::Evaluate(const Input& in, const RunOutcome& old_out, const RunOutcome& new_out) const {
  return Eval(*root_, *sig_, in, old_out, new_out) != 0;
}

}  // namespace patchlab::emulator
