// What the fleet's driver and its server processes agree on: the request path, the control
// endpoint, the fault modes and the log line format. Both sides use cpp-httplib for HTTP itself;
// this header only names the paths and parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flowpool_fleet {

/// How a server answers `/work` (set by the driver through `/mode`).
enum class server_mode {
  ok,       ///< serve: sleep the requested time, then answer 200 with the id
  fail500,  ///< answer 500 at once, serve nothing
  hang,     ///< read the request and never answer (until the mode changes): the client times out
};

/// @return the mode's wire name: "ok", "fail500" or "hang".
inline const char* to_string(server_mode mode) noexcept {
  switch (mode) {
    case server_mode::ok:
      return "ok";
    case server_mode::fail500:
      return "fail500";
    case server_mode::hang:
      return "hang";
  }
  return "?";
}

/// @return the mode named `name`, or nullopt.
inline std::optional<server_mode> parse_server_mode(std::string_view name) noexcept {
  if (name == "ok")
    return server_mode::ok;
  if (name == "fail500")
    return server_mode::fail500;
  if (name == "hang")
    return server_mode::hang;
  return std::nullopt;
}

/// GET: one request. Parameters: run (a tag that keeps the logs of successive runs apart), id,
/// us (service time in microseconds). Answer: 200 with body "<id> <server index>", 503 when the
/// server already serves its K requests, 500 in fail500 mode.
inline constexpr const char* k_work_path = "/work";
/// POST with parameter mode=ok|fail500|hang: changes how /work answers. Never counts as a request.
inline constexpr const char* k_mode_path = "/mode";

/// @return the path and query of request `id` of run `run` with `service_us` of service time.
inline std::string work_target(std::uint32_t run, std::uint64_t id, std::uint64_t service_us) {
  return std::string(k_work_path) + "?run=" + std::to_string(run) + "&id=" + std::to_string(id) +
         "&us=" + std::to_string(service_us);
}

/// One line of a server's log: "<run> <id> <status>\n", written with one write(2) to a file
/// opened with O_APPEND before the response is sent, so it survives a SIGKILL of the server.
struct log_line {
  std::uint32_t run = 0;
  std::uint64_t id = 0;
  int status = 0;  ///< 200 served, 503 refused (over K), 500 failed on purpose
};

}  // namespace flowpool_fleet
