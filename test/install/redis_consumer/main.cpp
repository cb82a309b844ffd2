// Links flowpool::redis from an installed tree and runs its code: a source pointed at a socket that
// does not exist must fail with connection_error (hiredis linked and called), and endpoint parsing
// must work. No Redis server is needed.
#include <flowpool/redis/stream_source.hpp>

#include <cstdio>
#include <string>

int main() {
  const auto ep = flowpool::redis::endpoint::parse("unix:/nonexistent/flowpool-consumer.sock");
  if (!ep || ep->to_string() != "unix:/nonexistent/flowpool-consumer.sock") {
    std::puts("endpoint::parse failed");
    return 1;
  }
  flowpool::redis::stream_source_options options;
  options.redis = ep->to_string();
  options.stream = "s";
  options.group = "g";
  options.consumer = "c";
  try {
    flowpool::redis::stream_source<flowpool::redis::stream_entry> source(
        options, flowpool::server_pool_options{}, nullptr,
        [](flowpool::slot_id, flowpool::redis::stream_message<flowpool::redis::stream_entry>&) {});
  } catch (const flowpool::redis::connection_error& e) {
    std::printf("redis consumer ok: %s\n", e.what());
    return 0;
  }
  std::puts("expected a connection_error");
  return 1;
}
