#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <string>

#include "util/status.h"

namespace conv::cmd {

// Exit codes shared by the client tools.
constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitError = 2;

// Reads an auth token file: it must be a regular file readable by its owner only
// (mode 0600 or stricter); the token is its content without trailing newlines.
util::Result<std::string> ReadTokenFile(const std::string& path);

// A CLI11 option taking a duration with a unit ("10ms", "1s").
CLI::Option* AddDurationOption(CLI::App& app, const std::string& name,
                               std::chrono::microseconds& target, const std::string& help);

// Prints "convergence: <message>" to stderr.
void PrintError(const std::string& message);

std::string VersionText();

}  // namespace conv::cmd
