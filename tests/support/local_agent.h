// The real patchlab-agent started on this host, listening on DIR/agent.sock
// with its requests' output under DIR/out and its own messages in
// DIR/agent.stderr: what the agent tests talk to with AgentClient.
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/subprocess.h"

namespace patchlab::testing_support {

inline Result<Subprocess> StartLocalAgent(const std::string& agent_binary,
                                          const std::filesystem::path& dir) {
  SubprocessOptions o;
  o.argv = {agent_binary, "--listen", (dir / "agent.sock").string(), "--out",
            (dir / "out").string()};
  o.stdout_mode = OutputMode::kFile;
  o.stdout_path = (dir / "agent.stderr").string();
  o.stderr_to_stdout = true;
  return Subprocess::Start(std::move(o));
}

}  // namespace patchlab::testing_support
