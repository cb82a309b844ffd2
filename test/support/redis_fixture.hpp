// Real-service fixture for the flowpool::redis tests: a redis-server child process on a unix socket
// in a temporary folder (no TCP: --port 0), child processes (workers) that die with the test
// (PR_SET_PDEATHSIG), and a small synchronous hiredis client. Every wait is bounded.
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flowpool_test {

// A child process started with execv; SIGKILLed if the test process (the forking thread) dies, and
// SIGKILLed and reaped by the destructor if still running.
class child_process {
 public:
  explicit child_process(std::vector<std::string> argv, const std::string& output_file = "") {
    std::vector<char*> args;
    for (std::string& a : argv) {
      args.push_back(a.data());
    }
    args.push_back(nullptr);
    const pid_t parent = getpid();
    m_pid = fork();
    if (m_pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (m_pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) {  // the parent died before prctl took effect
        _exit(127);
      }
      if (!output_file.empty()) {
        const int fd = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
          dup2(fd, 1);
          ::close(fd);
        }
      }
      execv(args[0], args.data());
      _exit(127);
    }
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  child_process(child_process&&) = delete;
  child_process& operator=(child_process&&) = delete;
  ~child_process() {
    if (running()) {
      ::kill(m_pid, SIGKILL);
      wait_exit(std::chrono::seconds(10));
    }
  }

  [[nodiscard]] bool running() const noexcept { return m_pid > 0 && !m_status; }
  void signal(int sig) const noexcept {
    if (running()) {
      ::kill(m_pid, sig);
    }
  }
  // The raw wait status once it exited, or nullopt after `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!m_status) {
      int status = 0;
      const pid_t r = waitpid(m_pid, &status, WNOHANG);
      if (r == m_pid) {
        m_status = status;
        break;
      }
      if (std::chrono::steady_clock::now() >= until) {
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return m_status;
  }
  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }

 private:
  pid_t m_pid = -1;
  std::optional<int> m_status;
};

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply = std::unique_ptr<redisReply, reply_deleter>;

// A synchronous client for the test's own checks and set-up.
class redis_client {
 public:
  explicit redis_client(const std::string& socket) {
    const timeval tv{5, 0};
    m_c = redisConnectUnixWithTimeout(socket.c_str(), tv);
    if (m_c == nullptr || m_c->err != 0) {
      const std::string why = m_c != nullptr ? m_c->errstr : "out of memory";
      if (m_c != nullptr) {
        redisFree(m_c);
      }
      throw std::runtime_error("redis_client: cannot connect to " + socket + ": " + why);
    }
    redisSetTimeout(m_c, tv);
  }
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;
  redis_client(redis_client&&) = delete;
  redis_client& operator=(redis_client&&) = delete;
  ~redis_client() { redisFree(m_c); }

  reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> len;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(m_c, static_cast<int>(argv.size()), argv.data(), len.data()));
    if (r == nullptr) {
      throw std::runtime_error(std::string("redis_client: connection lost: ") + m_c->errstr);
    }
    return reply(r);
  }
  long long integer(const std::vector<std::string>& args) {
    reply r = command(args);
    if (r->type != REDIS_REPLY_INTEGER) {
      throw std::runtime_error("redis_client: " + args[0] + " did not return an integer: " +
                               (r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : std::string("?")));
    }
    return r->integer;
  }
  // Appends every command, then reads every reply (one round trip): for filling streams fast.
  void pipeline(const std::vector<std::vector<std::string>>& commands) {
    for (const auto& args : commands) {
      std::vector<const char*> argv;
      std::vector<std::size_t> len;
      for (const std::string& a : args) {
        argv.push_back(a.data());
        len.push_back(a.size());
      }
      redisAppendCommandArgv(m_c, static_cast<int>(argv.size()), argv.data(), len.data());
    }
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* r = nullptr;
      if (redisGetReply(m_c, &r) != REDIS_OK) {
        throw std::runtime_error("redis_client: pipeline failed");
      }
      freeReplyObject(r);
    }
  }
  // Pending entries of the group (XPENDING's count), 0 if the group has none.
  long long pending(const std::string& stream, const std::string& group) {
    reply r = command({"XPENDING", stream, group});
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_INTEGER) {
      return r->element[0]->integer;
    }
    return -1;
  }

 private:
  redisContext* m_c = nullptr;
};

// A redis-server child on a unix socket in a fresh temporary folder. With `persistent`, it keeps an
// append-only file fsynced on every write, so a SIGKILL and restart lose nothing acknowledged.
class redis_server {
 public:
  explicit redis_server(bool persistent = false) : m_persistent(persistent) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "flowpool-redis-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("redis_server: mkdtemp failed");
    }
    m_dir = tmpl;
    m_socket = (std::filesystem::path(m_dir) / "redis.sock").string();
    start();
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  redis_server(redis_server&&) = delete;
  redis_server& operator=(redis_server&&) = delete;
  ~redis_server() {
    m_process.reset();
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }

  [[nodiscard]] const std::string& socket() const noexcept { return m_socket; }
  [[nodiscard]] std::string endpoint() const { return "unix:" + m_socket; }

  // SIGKILL (no clean shutdown) and reap.
  void kill() {
    if (m_process) {
      m_process->signal(SIGKILL);
      m_process->wait_exit(std::chrono::seconds(10));
      m_process.reset();
    }
  }
  // Starts it again on the same socket and folder (the AOF is reloaded when persistent).
  void start() {
    std::vector<std::string> argv{FLOWPOOL_REDIS_SERVER,
                                  "--port",
                                  "0",
                                  "--unixsocket",
                                  m_socket,
                                  "--unixsocketperm",
                                  "700",
                                  "--dir",
                                  m_dir,
                                  "--save",
                                  "",
                                  "--logfile",
                                  (std::filesystem::path(m_dir) / "redis.log").string()};
    if (m_persistent) {
      argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
      argv.insert(argv.end(), {"--appendonly", "no"});
    }
    m_process = std::make_unique<child_process>(argv);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      if (ping()) {
        return;
      }
      if (std::chrono::steady_clock::now() >= until || !m_process->running() ||
          m_process->wait_exit(std::chrono::milliseconds(0))) {
        throw std::runtime_error("redis_server: did not become ready on " + m_socket);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

 private:
  bool ping() const {
    const timeval tv{1, 0};
    redisContext* c = redisConnectUnixWithTimeout(m_socket.c_str(), tv);
    bool ok = false;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG";
      if (r != nullptr) {
        freeReplyObject(r);
      }
    }
    if (c != nullptr) {
      redisFree(c);
    }
    return ok;
  }

  bool m_persistent;
  std::string m_dir;
  std::string m_socket;
  std::unique_ptr<child_process> m_process;
};

// Polls `pred` every few milliseconds until it holds or `limit` passes; returns pred().
template <class Pred>
bool poll_until(Pred pred, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) {
      return pred();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace flowpool_test
