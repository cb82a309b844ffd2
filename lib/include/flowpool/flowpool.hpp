/// @file
/// @brief The umbrella header: includes every public flowpool header.
#pragma once

#include <flowpool/bounded_queue.hpp>
#include <flowpool/server_pool.hpp>
#include <flowpool/version.hpp>
