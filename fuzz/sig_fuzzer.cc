// The C prototype parser of `patchlab check --sig` (emulator/signature.h).
// What it accepts must be something the checker can place
// (fuzz/signature_invariants.h).
#include "emulator/signature.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/signature_invariants.h"

PATCHLAB_FUZZ_TARGET(sig) {
  auto sig = patchlab::emulator::ParseSignature(patchlab::fuzz::AsText(data, size));
  if (!sig) return 0;
  patchlab::fuzz::CheckSignatureInvariants(*sig);
  return 0;
}
