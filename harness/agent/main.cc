// patchlab-agent: the lab's guest agent (see agent.h, harness/protocol/agent_protocol.h).
//
//   patchlab-agent --device /dev/ttyS1     in a guest: the second serial port
//   patchlab-agent --listen SOCKET         on a host: accept one connection (tests)
//   patchlab-agent --fd N                  an inherited, connected descriptor
//
// Options: --kmsg PATH (default /dev/kmsg), --out DIR (workload output, default
// /run/out), --power-off (power the machine off on shutdown; implied as PID 1).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "harness/agent/agent.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: patchlab-agent (--device TTY | --listen SOCKET | --fd N) [--kmsg PATH] "
               "[--out DIR] [--power-off]\n");
  return 2;
}

int ListenOnce(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (s < 0 || path.size() >= sizeof addr.sun_path) return -1;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 1) != 0)
    return -1;
  int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(s);
  ::unlink(path.c_str());
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  using patchlab::agent::Agent;
  using patchlab::agent::AgentOptions;
  AgentOptions options;
  options.power_off_on_shutdown = ::getpid() == 1;
  std::string device, listen_path;
  int fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--power-off") {
      options.power_off_on_shutdown = true;
    } else if ((a == "--device" || a == "--listen" || a == "--fd" || a == "--kmsg" ||
                a == "--out") &&
               (v = next()) != nullptr) {
      if (a == "--device") device = v;
      if (a == "--listen") listen_path = v;
      if (a == "--fd") fd = std::atoi(v);
      if (a == "--kmsg") options.kmsg_path = v;
      if (a == "--out") options.output_dir = v;
    } else {
      return Usage();
    }
  }
  if (!device.empty()) {
    fd = ::open(device.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    std::string error;
    if (fd < 0 || !patchlab::agent::MakeRaw(fd, &error)) {
      std::fprintf(stderr, "patchlab-agent: %s: %s\n", device.c_str(),
                   fd < 0 ? std::strerror(errno) : error.c_str());
      return 1;
    }
    options.serial = true;
  } else if (!listen_path.empty()) {
    fd = ListenOnce(listen_path);
    if (fd < 0) {
      std::fprintf(stderr, "patchlab-agent: listen on %s: %s\n", listen_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }
  if (fd < 0) return Usage();
  options.channel_fd = fd;
  Agent agent(options);
  return agent.Run();
}
