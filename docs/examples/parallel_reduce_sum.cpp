// flowpool::parallel_reduce: map every index to a value and combine the values with an
// associative operation. The pieces are combined in index order, so even a non-commutative
// operation (here string concatenation) gives the serial left fold, on every run.
#include <flowpool/parallel_reduce.hpp>
#include <flowpool/thread_pool.hpp>

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

int main() {
  flowpool::thread_pool pool(2);  // two workers

  //! [parallel_reduce]
  std::vector<double> values(1 << 20);
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<double>(i % 100);
  }

  // Sum: identity 0.0, map i to values[i], reduce with +. `0` and `values.size()` have
  // different types; the loop runs in their common type, std::size_t.
  const double sum = flowpool::parallel_reduce(
      pool, 0, values.size(), 0.0, [&values](std::size_t i) { return values[i]; },
      [](double a, double b) { return a + b; });

  // Not commutative: concatenation. The result is "abcd...z" repeated, in index order.
  const std::string letters = flowpool::parallel_reduce(
      pool, 0, 26 * 40, std::string{}, [](int i) { return std::string(1, static_cast<char>('a' + i % 26)); },
      [](std::string a, const std::string& b) { return a + b; });
  //! [parallel_reduce]

  double serial = 0.0;
  for (const double v : values) {
    serial += v;
  }
  std::string expected;
  for (int i = 0; i < 26 * 40; ++i) {
    expected += static_cast<char>('a' + i % 26);
  }
  std::printf("sum = %.0f (serial %.0f); letters in order: %s\n", sum, serial, letters == expected ? "yes" : "no");
  return sum == serial && letters == expected ? 0 : 1;
}
