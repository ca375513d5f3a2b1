#include "emulator/checker.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "emulator/dwarf_signature.h"
#include "emulator/expect.h"
#include "emulator/input_generator.h"
#include "emulator/listing.h"
#include "emulator/shrinker.h"

namespace patchlab::emulator {

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kEquivalent:
      return "equivalent";
    case Verdict::kExpectedDivergence:
      return "expected-divergence";
    case Verdict::kDiverges:
      return "diverges";
    case Verdict::kNewCrash:
      return "new-crash";
    case Verdict::kNewHang:
      return "new-hang";
    case Verdict::kInconclusive:
      return "inconclusive";
  }
  return "?";
}

int VerdictExitCode(Verdict v) {
  switch (v) {
    case Verdict::kEquivalent:
    case Verdict::kExpectedDivergence:
      return 0;
    case Verdict::kInconclusive:
      return 3;
    default:
      return 1;
  }
}

Result<Signature> ResolveSignature(const CheckOptions& options, std::string* source) {
  if (!options.signature.empty()) {
    *source = "--sig";
    return ParseSignature(options.signature);
  }
  *source = "DWARF";
  std::string name = options.old_fn.symbol;
  return ReadDwarfSignature(options.old_fn.elf, name);
}

namespace {

// Hangs cost a whole budget each. Once one is seen, later runs get a budget
// 1000 times the longest run that ended, so that a patch hanging on most
// inputs does not take hours; never more than the configured one.
constexpr uint64_t kHangBudgetFactor = 1000;
constexpr uint64_t kMinHangBudget = 100000;
// Shrinking a hang re-runs whole budgets: keep it short.
constexpr int kHangShrinkEvaluations = 40;

struct Found {
  DivergenceKind kind;
  Input input;
  uint64_t index;
};

// One check from start to verdict: the inputs run (RunInputs), one shrunk
// counterexample per kind of divergence (AddCounterexamples), the verdict.
class CheckRun {
 public:
  explicit CheckRun(const CheckOptions& options) : options_(options) {}

  Result<CheckResult> Run() {
    if (auto s = Prepare(); !s) return std::unexpected(s.error());
    RunInputs();
    AddCounterexamples();
    result_.verdict = DecideVerdict();
    Log("emulator")
        ->debug("check {} vs {}: {} after {} inputs", options_.old_fn.ToString(),
                options_.new_fn.ToString(), VerdictName(result_.verdict), result_.inputs_run);
    return std::move(result_);
  }

 private:
  // The signature, the expectations, the corpus, both sandboxes and the
  // input generator with the functions' constants as its dictionary.
  Status Prepare() {
    auto sig = ResolveSignature(options_, &result_.signature_source);
    if (!sig)
      return std::unexpected(
          std::move(sig.error()).AddContext("signature of " + options_.old_fn.ToString()));
    sig_ = std::move(*sig);
    result_.signature = sig_.text;
    for (const std::string& e : options_.expects) {
      auto x = Expect::Parse(e, sig_);
      if (!x) return std::unexpected(x.error());
      expects_.push_back(std::move(*x));
    }
    std::vector<std::vector<uint8_t>> corpus;
    if (!options_.corpus_dir.empty()) {
      auto c = ReadCorpus(options_.corpus_dir);
      if (!c) return std::unexpected(c.error());
      corpus = std::move(*c);
    }
    PairOptions pair;
    pair.max_blocks = options_.max_blocks;
    pair.cpu = options_.cpu;
    pair.seed = options_.seed;
    pair.deny_syscalls = options_.deny_syscalls;
    auto runner = PairRunner::Create(sig_, options_.old_fn, options_.new_fn, pair);
    if (!runner) return std::unexpected(runner.error());
    runner_ = std::move(*runner);
    result_.notes = runner_->notes();
    result_.cpu = runner_->cpu_name();
    result_.syscall_seed = options_.seed;
    if (options_.deny_syscalls)
      result_.notes.push_back(
          "system calls other than the deterministic layer's were refused -ENOSYS "
          "(--deny-syscalls): judged on their error paths");
    if (options_.listing)
      result_.listing = SideBySideListing(runner_->old_function(), runner_->new_function());
    gen_ = std::make_unique<InputGenerator>(sig_, options_.seed, std::move(corpus));
    auto tokens = ExtractTokens(runner_->old_function());
    for (auto& t : ExtractTokens(runner_->new_function())) tokens.push_back(std::move(t));
    std::sort(tokens.begin(), tokens.end());
    tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
    gen_->SetDictionary(std::move(tokens));
    return {};
  }

  bool Expected(const Input& in, const PairOutcome& o) const {
    for (const Expect& x : expects_) {
      if (x.Evaluate(in, *o.old_out, *o.new_out)) return true;
    }
    return false;
  }

  bool Has(DivergenceKind k) const {
    return std::any_of(found_.begin(), found_.end(), [&](const Found& f) { return f.kind == k; });
  }

  void RunInputs() {
    PairRunner& pr = *runner_;
    uint64_t longest = 0;
    const uint64_t count_every = std::max<uint64_t>(1, options_.count_every);
    for (uint64_t i = 0; i < options_.inputs; ++i) {
      Input in = gen_->Next();
      // Which inputs are counted depends on their index and on hangs only (a
      // hang is always found by a counting run), never on timing: the counts,
      // the budget they lead to and so the report are the same every time.
      // Once a hang is seen every run is counted: the budget shrinks to what
      // the counted runs needed, and hangs cost whole budgets anyway.
      const bool counted = hang_seen_ || i % count_every == 0;
      PairOutcome o = pr.Run(in, counted ? RunMode::kCounted : RunMode::kFast);
      ++result_.inputs_run;
      if (o.old_out->ending == Ending::kReturned && o.new_out->ending == Ending::kReturned)
        ++result_.returned_inputs;
      if (i % count_every == 0) {
        ++result_.insns_inputs;
        result_.insns_old += o.old_out->insns;
        result_.insns_new += o.new_out->insns;
      }
      for (const RunOutcome* r : {o.old_out, o.new_out}) {
        if (r->ending == Ending::kHang)
          hang_seen_ = true;
        else if (counted)
          longest = std::max(longest, r->blocks);
      }
      if (hang_seen_) {
        pr.SetMaxBlocks(
            std::min(options_.max_blocks, std::max(kMinHangBudget, longest * kHangBudgetFactor)));
      }
      if (o.divergence) Classify(std::move(in), i, o);
    }
  }

  // Counts input `i`, on which the sides differed, and keeps it when it is
  // the first of its kind.
  void Classify(Input in, uint64_t i, const PairOutcome& o) {
    DivergenceKind kind = o.divergence->kind;
    if (kind == DivergenceKind::kInconclusive) {
      if (result_.inconclusive_inputs++ == 0) result_.inconclusive_reason = o.divergence->detail;
    } else if (Expected(in, o)) {
      ++result_.expected_inputs;
      return;
    } else {
      ++result_.divergent_inputs;
    }
    if (!Has(kind)) found_.push_back({kind, std::move(in), i});
  }

  void AddCounterexamples() {
    for (const Found& f : found_) result_.counterexamples.push_back(MinimalCounterexample(f));
  }

  // Shrinks the first input of a kind and re-runs it exactly.
  Counterexample MinimalCounterexample(const Found& f) {
    PairRunner& pr = *runner_;
    Input minimal = f.input;
    if (f.kind != DivergenceKind::kInconclusive) {
      bool hang = f.kind == DivergenceKind::kNewHang || f.kind == DivergenceKind::kFixedHang;
      minimal = Shrink(
          sig_, f.input,
          [&](const Input& c) {
            PairOutcome o = pr.Run(c, hang_seen_ ? RunMode::kCounted : RunMode::kFast);
            return o.divergence && o.divergence->kind == f.kind && !Expected(c, o);
          },
          hang ? std::min(kHangShrinkEvaluations, options_.shrink_evaluations)
               : options_.shrink_evaluations);
    }
    PairOutcome o = pr.Run(minimal, RunMode::kExact);
    Counterexample cx;
    cx.kind = std::string(DivergenceKindName(f.kind));
    cx.input_text = RenderInput(sig_, minimal);
    cx.input = std::move(minimal);
    cx.old_result = DescribeOutcome(*o.old_out);
    cx.new_result = DescribeOutcome(*o.new_out);
    if (sig_.ret_width != 0) {
      if (o.old_out->ending == Ending::kReturned)
        cx.old_result += " (" + RenderReturn(sig_, *o.old_out) + ")";
      if (o.new_out->ending == Ending::kReturned)
        cx.new_result += " (" + RenderReturn(sig_, *o.new_out) + ")";
    }
    cx.detail = o.divergence ? o.divergence->detail : "did not diverge again on an exact re-run";
    cx.found_at = f.index;
    return cx;
  }

  Verdict DecideVerdict() const {
    bool other = std::any_of(found_.begin(), found_.end(), [](const Found& f) {
      return f.kind != DivergenceKind::kInconclusive;
    });
    if (Has(DivergenceKind::kNewCrash)) return Verdict::kNewCrash;
    if (Has(DivergenceKind::kNewHang)) return Verdict::kNewHang;
    if (other) return Verdict::kDiverges;
    if (result_.inconclusive_inputs > 0) return Verdict::kInconclusive;
    if (result_.expected_inputs > 0) return Verdict::kExpectedDivergence;
    return Verdict::kEquivalent;
  }

  const CheckOptions& options_;
  CheckResult result_;
  Signature sig_;
  std::vector<Expect> expects_;
  std::unique_ptr<PairRunner> runner_;
  std::unique_ptr<InputGenerator> gen_;
  std::vector<Found> found_;
  bool hang_seen_ = false;
};

}  // namespace

Result<CheckResult> RunCheck(const CheckOptions& options) { return CheckRun(options).Run(); }

std::string FormatText(const CheckResult& r) {
  std::string s =
      fmt::format("verdict: {}\nsignature: {} (from {})\ninputs run: {}\n", VerdictName(r.verdict),
                  r.signature, r.signature_source, r.inputs_run);
  if (r.divergent_inputs)
    s += fmt::format("inputs with unexpected differences: {}\n", r.divergent_inputs);
  if (r.expected_inputs)
    s += fmt::format("inputs with expected differences: {}\n", r.expected_inputs);
  if (r.inconclusive_inputs) {
    s += fmt::format("inconclusive inputs: {} (first: {})\n", r.inconclusive_inputs,
                     r.inconclusive_reason);
  }
  for (const std::string& n : r.notes) s += fmt::format("note: {}\n", n);
  double ratio =
      r.insns_old == 0 ? 0.0 : static_cast<double>(r.insns_new) / static_cast<double>(r.insns_old);
  s += fmt::format("instructions executed on {} counted inputs: old {}, new {} (new/old {:.3f})\n",
                   r.insns_inputs, r.insns_old, r.insns_new, ratio);
  for (const Counterexample& c : r.counterexamples) {
    s += fmt::format(
        "\ncounterexample [{}] (first seen at input {}):\n  input: {}\n  old:   {}\n  new:   {}\n  "
        "detail: {}\n",
        c.kind, c.found_at, c.input_text, c.old_result, c.new_result, c.detail);
  }
  if (!r.listing.empty()) s += "\n" + r.listing;
  return s;
}

std::string FormatJson(const CheckResult& r) {
  nlohmann::json j;
  j["verdict"] = std::string(VerdictName(r.verdict));
  j["signature"] = r.signature;
  j["signature_source"] = r.signature_source;
  j["inputs_run"] = r.inputs_run;
  j["divergent_inputs"] = r.divergent_inputs;
  j["expected_inputs"] = r.expected_inputs;
  j["inconclusive_inputs"] = r.inconclusive_inputs;
  j["returned_inputs"] = r.returned_inputs;
  if (!r.inconclusive_reason.empty()) j["inconclusive_reason"] = r.inconclusive_reason;
  j["insns_old"] = r.insns_old;
  j["insns_new"] = r.insns_new;
  j["insns_inputs"] = r.insns_inputs;
  j["cpu"] = r.cpu;
  j["syscall_seed"] = r.syscall_seed;
  if (!r.notes.empty()) j["notes"] = r.notes;
  j["counterexamples"] = nlohmann::json::array();
  for (const Counterexample& c : r.counterexamples) {
    nlohmann::json args = nlohmann::json::array();
    for (const ArgValue& a : c.input.args) {
      nlohmann::json v;
      v["value"] = a.value;
      v["null"] = a.is_null;
      std::string hex;
      for (uint8_t b : a.bytes) hex += fmt::format("{:02x}", b);
      v["bytes"] = hex;
      args.push_back(v);
    }
    j["counterexamples"].push_back({{"kind", c.kind},
                                    {"input", c.input_text},
                                    {"args", args},
                                    {"leading_guard", c.input.leading},
                                    {"old", c.old_result},
                                    {"new", c.new_result},
                                    {"detail", c.detail},
                                    {"found_at", c.found_at}});
  }
  if (!r.listing.empty()) j["listing"] = r.listing;
  return j.dump(2);
}

}  // namespace patchlab::emulator
