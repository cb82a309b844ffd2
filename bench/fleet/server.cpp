// fleet_server: one server of the fleet (issue 11), a real HTTP server process on loopback built
// on cpp-httplib. It serves exactly K requests at a time (a request beyond K gets 503), sleeps
// each request's service time, answers its id, and appends every request it answered to its log.
//
//   fleet_server --index I --slots K --log FILE [--port P] [--threads N]
//
// It binds 127.0.0.1:P (P = 0: a free port the kernel picks), prints "PORT <n>" on stdout and
// serves until its parent goes away: the parent keeps the write end of this process's stdin, and
// EOF on stdin (the parent closed it or died) ends the process. The spawner also sets
// PR_SET_PDEATHSIG to SIGKILL before exec, so even a stuck server dies with its parent.
// Faults: POST /mode?mode=fail500|hang|ok; SIGKILL comes from the driver, which restarts the
// server with --port of its old port.
#include "protocol.hpp"

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace {

using namespace flowpool_fleet;

struct options {
  std::size_t index = 0;
  int slots = 2;
  int port = 0;
  int threads = 32;
  std::string log;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "fleet_server: %s\nusage: fleet_server --index I --slots K --log FILE [--port P] [--threads N]\n",
               why.c_str());
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--index") {
      o.index = std::strtoul(value, nullptr, 10);
    } else if (flag == "--slots") {
      o.slots = std::atoi(value);
    } else if (flag == "--port") {
      o.port = std::atoi(value);
    } else if (flag == "--threads") {
      o.threads = std::atoi(value);
    } else if (flag == "--log") {
      o.log = value;
    } else {
      usage("unknown option " + flag);
    }
  }
  if (argc % 2 == 0) {
    usage("every option takes a value");
  }
  if (o.slots < 1 || o.threads < o.slots + 2 || o.port < 0 || o.port > 65535 || o.log.empty()) {
    usage("need --slots >= 1, --threads >= slots + 2, a port in [0, 65535] and --log");
  }
  return o;
}

// The server's fault mode; the hang mode's waiters sleep on the condition variable.
class mode_switch {
 public:
  server_mode get() const noexcept { return m_mode.load(std::memory_order_acquire); }  // pairs with: set()

  void set(server_mode mode) {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_mode.store(mode, std::memory_order_release);  // pairs with: get()
    }
    m_changed.notify_all();
  }

  // Blocks while the mode is `hang`, at most `limit`.
  void wait_while_hanging(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_changed.wait_for(lock, limit, [&] { return m_mode.load(std::memory_order_relaxed) != server_mode::hang; });
  }

 private:
  std::atomic<server_mode> m_mode{server_mode::ok};
  std::mutex m_mutex;
  std::condition_variable m_changed;
};

// One log line per answered request, one write(2) each (O_APPEND: atomic, and in the kernel
// before the response leaves, so a SIGKILL right after loses nothing that was answered).
void append(int fd, const std::string& run, const std::string& id, int status) {
  const std::string line = run + " " + id + " " + std::to_string(status) + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::perror("fleet_server: log write");
    std::_Exit(3);  // a server that cannot log would break conservation: fail loudly
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hung up must not kill the server
  // The life line: EOF on stdin means the parent is gone (or wants this server gone).
  std::thread([] {
    char buffer[64];
    while (::read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
    }
    std::_Exit(0);
  }).detach();

  const int log = ::open(o.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    std::perror("fleet_server: open log");
    return 3;
  }
  const std::string index = std::to_string(o.index);
  const int slots = o.slots;
  std::atomic<int> in_flight{0};
  mode_switch mode;

  httplib::Server server;
  const int threads = o.threads;
  // One thread per open connection (keep-alive): enough for every design's connections plus the
  // over-K ones that get their 503.
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  server.set_keep_alive_max_count(1000000);  // a slot keeps its connection for the whole run
  server.set_keep_alive_timeout(30);
  server.set_tcp_nodelay(true);

  server.Get(k_work_path, [&](const httplib::Request& request, httplib::Response& response) {
    static thread_local const bool k_slack = ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0;
    (void)k_slack;  // sleep overshoot = scheduler latency only, as in bench/scenario
    const std::string run = request.get_param_value("run");
    const std::string id = request.get_param_value("id");
    const long long us = std::atoll(request.get_param_value("us").c_str());
    switch (mode.get()) {
      case server_mode::fail500:
        append(log, run, id, 500);
        response.status = 500;
        return;
      case server_mode::hang:
        mode.wait_while_hanging(std::chrono::seconds(30));  // the client has long timed out
        response.status = 503;
        return;
      case server_mode::ok:
        break;
    }
    // relaxed: the count only limits concurrency; it publishes nothing.
    if (in_flight.fetch_add(1, std::memory_order_relaxed) >= slots) {
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      append(log, run, id, 503);
      response.status = 503;
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(us));
    append(log, run, id, 200);
    // Free the slot before the response leaves, so a client that sends its next request the moment
    // it has this answer never finds the slot still taken.
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    response.set_content(id + " " + index, "text/plain");
  });

  server.Post(k_mode_path, [&](const httplib::Request& request, httplib::Response& response) {
    const std::optional<server_mode> next = parse_server_mode(request.get_param_value("mode"));
    if (!next) {
      response.status = 400;
      return;
    }
    mode.set(*next);
    response.set_content(to_string(*next), "text/plain");
  });

  const int port =
      o.port == 0 ? server.bind_to_any_port("127.0.0.1") : (server.bind_to_port("127.0.0.1", o.port) ? o.port : -1);
  if (port <= 0) {
    std::printf("ERROR bind 127.0.0.1:%d: %s\n", o.port, std::strerror(errno));
    std::fflush(stdout);
    return 4;
  }
  std::printf("PORT %d\n", port);
  std::fflush(stdout);
  server.listen_after_bind();
  return 0;
}
