#include "base/parent_death.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>

namespace patchlab {

void DieWithParent(pid_t parent, int signal) {
  // Only an invalid signal makes this fail: a bug in the caller.
  if (::prctl(PR_SET_PDEATHSIG, signal) != 0) std::abort();
  // A parent that died before the prctl sends nothing: the child was already
  // reparented (to init or a subreaper), so its parent pid has changed.
  if (::getppid() != parent) ::_exit(127);
}

}  // namespace patchlab
