#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace conv::net {

// Splits "host:port" ("[v6]:port" for IPv6). Fails with a message naming the input.
util::Status ParseHostPort(const std::string& text, std::string* host, uint16_t* port);

// True for a host that names every interface (0.0.0.0, ::, and their other spellings),
// which a listener may bind but nobody can connect to as one server's address.
bool IsWildcardHost(const std::string& host);

// Splits a comma-separated list of HOST:PORT ("a:1,b:2"; one address is a list of
// one). Fails naming the entry that is wrong: its position and text, and why.
util::Result<std::vector<std::string>> ParseAddressList(std::string_view text);

}  // namespace conv::net
