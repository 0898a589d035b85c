#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace conv::net {

// Splits "host:port" ("[v6]:port" for IPv6). Fails with a message naming the input.
util::Status ParseHostPort(const std::string& text, std::string* host, uint16_t* port);

}  // namespace conv::net
