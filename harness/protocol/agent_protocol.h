// The wire protocol between the lab (host) and the guest agent: JSON lines.
//
// One JSON object per line, '\n'-terminated, at most kMaxLineBytes. Both ends
// read in blocks and split on '\n'.
//
//   host -> agent   request  {"id": N, "op": "<op>", ...arguments}
//   agent -> host   reply    {"id": N, "ok": true, ...results}
//                            {"id": N, "ok": false, "error": "why"}
//   agent -> host   event    {"event": "ready" | "heartbeat" | "exit", ...}
//
// The agent sends "ready" once the host is connected (on a serial port it sends
// it again until the first request arrives, because what the guest writes before
// the host connects is dropped), then a "heartbeat" every kHeartbeatInterval with
// a sequence number, and an "exit" event whenever a child it started ends.
//
// Operations and their fields (all sizes in bytes, times in the units named):
//   hello                               -> agent_version, kernel (uname -r), machine,
//                                          cpu_model, ncpus, uptime_s, boot_id
//   exec   argv[], env{}, cwd, stdout, stderr (guest paths; default /run/out/PID.{out,err})
//                                       -> pid
//   wait   pid, timeout_ms              -> exited(bool), code | signal, core_dumped, timed_out
//   kill   pid, signal                  -> {}
//   run    argv[], env{}, cwd, timeout_ms, stdin (text)
//                                       -> exited, code | signal, stdout, stderr, timed_out
//          (a child whose output the agent captures; the reply comes when it ends,
//           so the agent keeps answering other requests and heartbeats meanwhile)
//   sample pid                          -> utime_ticks, stime_ticks, clk_tck, utime_s,
//                                          stime_s, rss_kib, pss_kib, private_dirty_kib,
//                                          load1, load5, load15, uptime_s
//   procs  exe (absolute path)          -> processes[] {pid, ppid, comm, start_ticks, cpu_ns}:
//          every process running that executable, CPU time of all its threads in ns
//   put    path, mode, data (base64), offset (0 truncates and creates) -> size
//   get    path, offset, length (<= kMaxChunkBytes) -> data (base64), eof
//   kmsg_mark                           -> mark (last kernel log sequence seen)
//   kmsg   since                        -> lines[] {seq, level, usec, text}, mark
//   shutdown                            -> {} (then the guest syncs and powers off)
//
// Thread-safety: constants and pure functions only.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace patchlab::harness::agent_protocol {

inline constexpr std::string_view kAgentVersion = "1";
inline constexpr size_t kMaxLineBytes = 4 * 1024 * 1024;
// Largest payload of one put/get; larger files go in several requests.
inline constexpr size_t kMaxChunkBytes = 256 * 1024;
inline constexpr std::chrono::milliseconds kHeartbeatInterval{1000};

// The guest's device for the channel: the second 8250 serial port (built into
// every Debian kernel, so the image needs no module for it).
inline constexpr std::string_view kGuestChannelDevice = "/dev/ttyS1";

// Standard base64 (RFC 4648, with padding), used for file payloads.
std::string Base64Encode(std::string_view bytes);
// Returns false on a character outside the alphabet or a bad length.
bool Base64Decode(std::string_view text, std::string* out);

}  // namespace patchlab::harness::agent_protocol
