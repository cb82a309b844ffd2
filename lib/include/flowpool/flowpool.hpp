/// @file
/// @brief The umbrella header: includes every public flowpool header.
#pragma once

#include <flowpool/bounded_queue.hpp>
#include <flowpool/latency_histogram.hpp>
#include <flowpool/parallel_for.hpp>
#include <flowpool/parallel_invoke.hpp>
#include <flowpool/parallel_reduce.hpp>
#include <flowpool/pool_stats.hpp>
#include <flowpool/server_pool.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>
#include <flowpool/version.hpp>
