// The driver's side of the fleet's server processes: start one as a child process on a free
// loopback port, learn the port over a pipe, kill it (SIGKILL) and start it again on the same
// port, switch its fault mode, read its log. Used by bench_fleet and by the integration test.
//
// Every child dies with its parent: the child sets PR_SET_PDEATHSIG to SIGKILL right after fork
// (and exits if the parent is already gone), and its stdin is a pipe whose write end only the
// parent holds, so EOF on it ends the server too. PR_SET_PDEATHSIG fires when the *thread* that
// forked exits: start and restart servers from a thread that outlives them (the main thread).
#pragma once

#include "protocol.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace flowpool_fleet {

/// One server process. Not copyable; the destructor kills and reaps it.
class server_process {
 public:
  /// Starts `program --index index --slots slots --log log --port 0` and waits (at most 10 s)
  /// for the port it reports. @throws std::runtime_error if it cannot start or bind.
  server_process(std::string program, std::size_t index, std::size_t slots, std::string log);
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// @return the loopback port it listens on (the same after a restart).
  [[nodiscard]] int port() const noexcept { return m_port; }
  /// @return true while the process runs (between start/restart and kill).
  [[nodiscard]] bool running() const noexcept { return m_pid > 0; }
  /// SIGKILL, then reap. No-op if not running.
  void kill() noexcept;
  /// Starts the server again on its old port (after kill()); retries the bind a few times in
  /// case the port is briefly in use. @throws std::runtime_error if it cannot.
  void restart();
  /// Sets the fault mode over HTTP (POST /mode). @return false if the server did not confirm.
  bool set_mode(server_mode mode) const;
  /// @return the log file's path.
  [[nodiscard]] const std::string& log_path() const noexcept { return m_log; }

 private:
  bool spawn(int port, std::string& error);

  std::string m_program;
  std::size_t m_index;
  std::size_t m_slots;
  std::string m_log;
  pid_t m_pid = -1;
  int m_life_line = -1;  // write end of the child's stdin; closing it ends the child
  int m_port = 0;
};

/// @return every line of the log at `path` (empty if it does not exist).
std::vector<log_line> read_log(const std::string& path);

/// S server processes of K slots each, logs in a fresh temporary folder (removed at the end).
class local_fleet {
 public:
  /// @throws std::runtime_error if a server cannot start (the started ones are killed).
  local_fleet(const std::string& program, std::size_t servers, std::size_t slots);
  ~local_fleet();
  local_fleet(const local_fleet&) = delete;
  local_fleet& operator=(const local_fleet&) = delete;

  [[nodiscard]] std::size_t size() const noexcept { return m_servers.size(); }
  [[nodiscard]] server_process& operator[](std::size_t i) noexcept { return *m_servers[i]; }
  [[nodiscard]] const server_process& operator[](std::size_t i) const noexcept { return *m_servers[i]; }
  /// @return the temporary folder of the logs.
  [[nodiscard]] const std::string& dir() const noexcept { return m_dir; }
  /// @return every server's port, by index.
  [[nodiscard]] std::vector<int> ports() const;
  /// @return every server's log lines of run `run`, by server.
  [[nodiscard]] std::vector<std::vector<log_line>> logs(std::uint32_t run) const;

 private:
  std::string m_dir;
  std::vector<std::unique_ptr<server_process>> m_servers;
};

/// @return the fleet_server program: $FLOWPOOL_FLEET_SERVER, else the path CMake compiled in.
std::string default_server_program();

}  // namespace flowpool_fleet
