#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace conv::cmd {

struct ServeOptions {
  std::string listen = "127.0.0.1:3727";
  std::string data_dir = "./convergence-data";
  uint32_t partitions = 0;  // 0: one per core
  uint32_t io_threads = 0;  // 0: one per two cores
  std::chrono::microseconds window{10'000};
  std::string schema_file;
  std::string auth_token_file;
  std::string tls_cert;  // empty: plain TCP
  std::string tls_key;
  std::string tls_client_ca;  // empty: no client certificate asked
  uint32_t max_frame = 1 << 20;
  uint32_t max_connections = 10'000;
  std::chrono::microseconds handshake_timeout{5'000'000};
  std::chrono::microseconds idle_timeout{600'000'000};
  std::chrono::microseconds max_future_ts{60'000'000};
  std::chrono::microseconds queue_goal{0};  // 0: a quarter of --window
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_listen;  // empty: no metrics endpoint
  std::string ws_listen;       // empty: no WebSocket listener
  std::string console;         // empty: no console
  std::vector<std::string> ws_allowed_origins;
  std::string fsync = "window";
  std::chrono::microseconds checkpoint_interval{60'000'000};
  std::chrono::microseconds resume_retention{600'000'000};
  uint64_t subscriber_backlog = 8u << 20;
  uint32_t max_sources = 65'536;
  std::chrono::microseconds source_retention{3'600'000'000};
  bool salvage = false;
  std::string replicate;  // NATS URLs; empty: the local log only
  std::string follow;     // NATS URLs; a read replica of --cluster-name
  std::string cluster_name;
  int replicas = 3;
  bool standby = false;  // with --follow: take over when the owner stops refreshing
  // The HOST:PORT an owner names in its record and not_owner messages; empty: the
  // --listen host and the bound port (port 0 here: the bound port too).
  std::string advertise;
  std::chrono::microseconds failover_after{3'000'000};
};

CLI::App* RegisterServe(CLI::App& app, ServeOptions& options);
int RunServe(const ServeOptions& options);

}  // namespace conv::cmd
