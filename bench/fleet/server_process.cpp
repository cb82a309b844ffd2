#include "server_process.hpp"

#include <httplib.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FLOWPOOL_FLEET_SERVER
#define FLOWPOOL_FLEET_SERVER "fleet_server"
#endif

namespace flowpool_fleet {
namespace {

// Reads the child's first line ("PORT <n>" or "ERROR ...") from `fd`, waiting at most `limit`.
std::string read_first_line(int fd, std::chrono::milliseconds limit) {
  std::string line;
  const auto give_up = std::chrono::steady_clock::now() + limit;
  for (int rounds = 0; rounds < 100000; ++rounds) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      break;
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      break;
    }
    char ch = 0;
    const ssize_t n = ::read(fd, &ch, 1);
    if (n <= 0) {
      break;  // EOF: the child exited without a line
    }
    if (ch == '\n') {
      return line;
    }
    line += ch;
  }
  return line;
}

}  // namespace

server_process::server_process(std::string program, std::size_t index, std::size_t slots, std::string log)
    : m_program(std::move(program)), m_index(index), m_slots(slots), m_log(std::move(log)) {
  std::string error;
  if (!spawn(0, error)) {
    throw std::runtime_error("fleet: server " + std::to_string(index) + " did not start: " + error);
  }
}

server_process::~server_process() {
  kill();
}

bool server_process::spawn(int port, std::string& error) {
  const std::vector<std::string> args = {
      m_program, "--index", std::to_string(m_index), "--slots", std::to_string(m_slots), "--port", std::to_string(port),
      "--log",   m_log};
  std::vector<char*> argv;
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  if (::pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    ::close(in[0]);
    ::close(in[1]);
    return false;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(1);  // the parent died before the prctl: nobody would kill us
    }
    ::dup2(in[0], STDIN_FILENO);  // dup2 clears O_CLOEXEC on the copies
    ::dup2(out[1], STDOUT_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    ::close(in[1]);
    ::close(out[0]);
    return false;
  }
  m_pid = pid;
  m_life_line = in[1];
  const std::string line = read_first_line(out[0], std::chrono::seconds(10));
  ::close(out[0]);  // the server writes nothing after its port (and ignores SIGPIPE)
  int reported = 0;
  if (line.rfind("PORT ", 0) == 0) {
    reported = std::atoi(line.c_str() + 5);
  }
  if (reported <= 0 || (port != 0 && reported != port)) {
    error = line.empty() ? "no port reported within 10 s" : line;
    kill();
    return false;
  }
  m_port = reported;
  return true;
}

void server_process::kill() noexcept {
  if (m_pid > 0) {
    ::kill(m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
    }
    m_pid = -1;
  }
  if (m_life_line >= 0) {
    ::close(m_life_line);
    m_life_line = -1;
  }
}

void server_process::restart() {
  kill();
  std::string error;
  for (int attempt = 0; attempt < 50; ++attempt) {  // a few ms of EADDRINUSE at worst
    if (spawn(m_port, error)) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("fleet: server " + std::to_string(m_index) + " did not restart on port " +
                           std::to_string(m_port) + ": " + error);
}

bool server_process::set_mode(server_mode mode) const {
  httplib::Client client("127.0.0.1", m_port);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(5));
  const httplib::Result result = client.Post(std::string(k_mode_path) + "?mode=" + to_string(mode));
  return result && result->status == 200;
}

std::vector<log_line> read_log(const std::string& path) {
  std::vector<log_line> lines;
  std::ifstream in(path);
  log_line l;
  while (in >> l.run >> l.id >> l.status) {
    lines.push_back(l);
  }
  return lines;
}

local_fleet::local_fleet(const std::string& program, std::size_t servers, std::size_t slots) {
  char pattern[] = "/tmp/flowpool-fleet-XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  if (dir == nullptr) {
    throw std::runtime_error(std::string("fleet: mkdtemp: ") + std::strerror(errno));
  }
  m_dir = dir;
  try {
    for (std::size_t s = 0; s < servers; ++s) {
      m_servers.push_back(
          std::make_unique<server_process>(program, s, slots, m_dir + "/server-" + std::to_string(s) + ".log"));
    }
  } catch (...) {
    m_servers.clear();
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
    throw;
  }
}

local_fleet::~local_fleet() {
  m_servers.clear();  // kills and reaps every server
  std::error_code ec;
  std::filesystem::remove_all(m_dir, ec);
}

std::vector<int> local_fleet::ports() const {
  std::vector<int> out;
  for (const auto& s : m_servers) {
    out.push_back(s->port());
  }
  return out;
}

std::vector<std::vector<log_line>> local_fleet::logs(std::uint32_t run) const {
  std::vector<std::vector<log_line>> out;
  for (const auto& s : m_servers) {
    std::vector<log_line> mine;
    for (const log_line& l : read_log(s->log_path())) {
      if (l.run == run) {
        mine.push_back(l);
      }
    }
    out.push_back(std::move(mine));
  }
  return out;
}

std::string default_server_program() {
  const char* env = std::getenv("FLOWPOOL_FLEET_SERVER");
  return env != nullptr && *env != '\0' ? env : FLOWPOOL_FLEET_SERVER;
}

}  // namespace flowpool_fleet
