#include "cmd/report.h"

#include <fmt/format.h>

#include <algorithm>

#include "cmd/workload.h"
#include "util/duration.h"

namespace conv::cmd {

namespace {

std::string Ms(double ms) {
  return fmt::format("{:.2f}", ms);
}
double MsOfUs(uint64_t us) {
  return static_cast<double>(us) / 1e3;
}
double MsOfNs(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
double UsOfNs(uint64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

// A Markdown table cell: a '|' or a line break would end the cell or the row.
std::string MdCell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string MdRow(const std::vector<std::string>& cells) {
  std::string out = "|";
  for (const auto& c : cells)
    out += " " + MdCell(c) + " |";
  return out + "\n";
}

std::string Markdown(const Table& t) {
  std::string out;
  if (!t.caption.empty()) out += t.caption + "\n\n";
  out += MdRow(t.header);
  out += "|";
  for (size_t i = 0; i < t.header.size(); ++i)
    out += "---|";
  out += "\n";
  for (const auto& row : t.rows)
    out += MdRow(row);
  return out;
}

// "p50 / p99 / p999" of a histogram, in ms or µs.
std::string P3(const util::Histogram& h, double divisor) {
  return fmt::format("{:.2f} / {:.2f} / {:.2f}", static_cast<double>(h.Percentile(0.5)) / divisor,
                     static_cast<double>(h.Percentile(0.99)) / divisor,
                     static_cast<double>(h.Percentile(0.999)) / divisor);
}

Table ConfigurationTable(const LoadOptions& o) {
  Mix mix = *ParseMix(o.mix);
  Table t{"Configuration:", {"Parameter", "Value"}, {}};
  auto row = [&t](std::string k, std::string v) { t.rows.push_back({std::move(k), std::move(v)}); };
  row("Server", o.server);
  row("Workers", o.workers == 0 ? std::string("0 (no writers)")
                                : fmt::format("{} (each a separate source)", o.workers));
  row("Entity pool", fmt::format("{} ({} schema)", o.entities, o.schema));
  row("Operation mix", fmt::format("{}% ASSERT / {}% PATCH / {}% RETRACT", mix.assert_pct,
                                   mix.patch_pct, mix.retract_pct));
  row("Write pattern", o.hot_pct == 0
                           ? std::string("uniform")
                           : fmt::format("{}% of entities receive 90% of writes", o.hot_pct));
  row("Rate limit",
      o.rate == 0 ? std::string("None (unlimited)") : fmt::format("{} ops/sec", o.rate));
  row("Duration", o.workers == 0 && o.readers == 0
                      ? std::string("until every subscriber is live (no writers)")
                      : util::FormatDuration(o.duration));
  row("Readers", fmt::format("{}", o.readers));
  std::string flags =
      std::string(o.bootstrap ? ", bootstrap" : "") + (o.include_prev ? ", include_prev" : "");
  row("Subscribers", fmt::format("{}{}", o.subscribers,
                                 o.subscribers == 0 ? std::string()
                                                    : " (each its own connection, all of the "
                                                      "schema" +
                                                          flags + ")"));
  return t;
}

void WriterRows(const LoadReport& r, std::vector<std::vector<std::string>>& rows) {
  std::vector<double> rates;
  for (const auto& w : r.workers)
    rates.push_back(static_cast<double>(w.acked_in_time) / r.seconds);
  double total = r.Throughput();
  rows.push_back({"Aggregate throughput", Human(total) + " ops/sec"});
  if (!rates.empty()) {
    auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
    rows.push_back({"Per-worker average",
                    fmt::format("~{} ops/sec", Human(total / static_cast<double>(rates.size())))});
    rows.push_back({"Per-worker range", fmt::format("{} — {} ops/sec", Human(*lo), Human(*hi))});
  }
  rows.push_back({"Total operations", Human(static_cast<double>(r.TotalSent()))});
  rows.push_back(
      {"Acknowledged", fmt::format("{} ({})", Human(static_cast<double>(r.TotalAcked())),
                                   r.TotalAcked() == r.TotalSent() ? "all" : "NOT all")});
  rows.push_back({"ACK latency p50 / p99 / p999",
                  fmt::format("{} ms (max {} ms; op generated → its ACK received)",
                              P3(r.ack_latency_ns, 1e6), Ms(MsOfNs(r.ack_latency_ns.max())))});
  // Where an ACK's time goes after its window's cut, as the server measured it.
  auto stage = [&](const char* name) {
    return fmt::format("{} / {}",
                       Ms(MsOfUs(r.Stat(r.stats_after, fmt::format("window_{}_p50_us", name)))),
                       Ms(MsOfUs(r.Stat(r.stats_after, fmt::format("window_{}_p99_us", name)))));
  };
  rows.push_back({"Server window stages p50 / p99 (since its start)",
                  fmt::format("cut → every partition reached it {} ms, → sealed {} ms, → durable "
                              "{} ms",
                              stage("queue"), stage("seal"), stage("durable"))});
}

void SubscriberRows(const LoadOptions& o, const LoadReport& r,
                    std::vector<std::vector<std::string>>& rows) {
  SubscriberSummary s = SummarizeSubscribers(r);
  if (o.workers > 0) {
    const util::Histogram& h = r.notify_latency_us;
    rows.push_back(
        {"Notifications received",
         fmt::format("{} changes in {} NOTIFY frames", Human(static_cast<double>(r.TotalChanges())),
                     r.TotalNotifyFrames())});
    rows.push_back(
        {"Notification rate", fmt::format("{} changes/sec (per subscriber {} — {}, median {})",
                                          Human(r.NotificationRate()), Human(s.rate.min),
                                          Human(s.rate.max), Human(s.rate.median))});
    rows.push_back(
        {"Notification latency p50 / p99 / p999",
         fmt::format("{} ms (max {} ms; window {} ms{})", P3(h, 1e3), Ms(MsOfUs(h.max())),
                     Ms(MsOfUs(r.window_us)),
                     r.latency_subscribers < r.subscribers.size()
                         ? fmt::format("; every change of {} subscribers spread over the {}",
                                       r.latency_subscribers, r.subscribers.size())
                         : "")});
    rows.push_back(
        {"Server conflations", fmt::format("{} ({} changes merged)", r.StatDelta("conflations"),
                                           r.StatDelta("conflated_changes"))});
    rows.push_back({"Server notify lag p99 (op ts → NOTIFY queued)",
                    Ms(MsOfUs(r.Stat(r.stats_after, "notify_lag_p99_us"))) + " ms"});
    if (s.converge_ms.n > 0) {
      rows.push_back({"Converged after writers drained",
                      fmt::format("max {:.1f} ms (median {:.1f}); sentinel ACK → its change max "
                                  "{:.1f} ms",
                                  s.converge_ms.max, s.converge_ms.median, s.after_ack_ms.max)});
    }
  }
  if (!o.bootstrap) return;
  rows.push_back({"Bootstrap time (SUBSCRIBE → SNAPSHOT_END)",
                  fmt::format("min {:.1f} / median {:.1f} / max {:.1f} ms", s.bootstrap_ms.min,
                              s.bootstrap_ms.median, s.bootstrap_ms.max)});
  rows.push_back(
      {"Bootstrap entities received",
       fmt::format("{} per subscriber{}",
                   s.entities.min == s.entities.max
                       ? fmt::format("{:.0f}", s.entities.min)
                       : fmt::format("{:.0f} — {:.0f}", s.entities.min, s.entities.max),
                   r.subscribers.size() > 1 ? fmt::format(" ({} in all)", s.entities_total) : "")});
}

Table ResultsTable(const LoadOptions& o, const LoadReport& r) {
  Table t{"Results:", {"Metric", "Value"}, {}};
  if (o.workers > 0) WriterRows(r, t.rows);
  t.rows.push_back({"Errors", fmt::format("{}", r.TotalErrors())});
  if (o.workers > 0) {
    t.rows.push_back({"Server coalescing ratio",
                      fmt::format("{:.2f} ops per claim change", r.CoalescingRatio())});
  }
  if (o.readers > 0) {
    t.rows.push_back({"Queries", fmt::format("{} ({:.0f}/sec, {} found)", r.query_ns.count(),
                                             static_cast<double>(r.query_ns.count()) / r.seconds,
                                             r.queries_found)});
    t.rows.push_back(
        {"Query round trip p50 / p99 / p999",
         fmt::format("{:.1f} / {:.1f} / {:.1f} µs", UsOfNs(r.query_ns.Percentile(0.5)),
                     UsOfNs(r.query_ns.Percentile(0.99)), UsOfNs(r.query_ns.Percentile(0.999)))});
  }
  if (o.subscribers > 0) SubscriberRows(o, r, t.rows);
  return t;
}

void WritePercentiles(util::JsonWriter& j, std::string_view key, const util::Histogram& h,
                      double divisor, int decimals) {
  j.Key(key).BeginObject();
  j.Field("p50", static_cast<double>(h.Percentile(0.5)) / divisor, decimals);
  j.Field("p99", static_cast<double>(h.Percentile(0.99)) / divisor, decimals);
  j.Field("p999", static_cast<double>(h.Percentile(0.999)) / divisor, decimals);
  j.Field("max", static_cast<double>(h.max()) / divisor, decimals);
  j.EndObject();
}

void WriteSpread(util::JsonWriter& j, std::string_view key, const Spread& s, int decimals) {
  j.Key(key).BeginObject();
  j.Field("min", s.min, decimals).Field("median", s.median, decimals).Field("max", s.max, decimals);
  j.EndObject();
}

void WriteSubscriberJson(util::JsonWriter& j, const LoadReport& r) {
  SubscriberSummary s = SummarizeSubscribers(r);
  uint64_t with_prev = 0;
  uint64_t sub_errors = 0;
  for (const auto& sub : r.subscribers) {
    with_prev += sub.with_prev;
    sub_errors += sub.errors;
  }
  j.Field("notifications", r.TotalChanges()).Field("notify_frames", r.TotalNotifyFrames());
  j.Field("notifications_with_prev", with_prev);
  j.Field("notifications_per_sec", r.NotificationRate(), 1);
  WriteSpread(j, "notifications_per_sec_per_subscriber", s.rate, 1);
  WritePercentiles(j, "notify_latency_ms", r.notify_latency_us, 1e3, 2);
  j.Field("latency_samples", r.notify_latency_us.count());
  j.Field("latency_subscribers", r.latency_subscribers);
  j.Field("server_conflations", r.StatDelta("conflations"));
  j.Field("server_conflated_changes", r.StatDelta("conflated_changes"));
  j.Field("server_notify_lag_p99_us", r.Stat(r.stats_after, "notify_lag_p99_us"));
  j.Field("subscriber_errors", sub_errors);
  WriteSpread(j, "bootstrap_ms", s.bootstrap_ms, 3);
  WriteSpread(j, "bootstrap_entities", s.entities, 0);
  j.Field("bootstrap_entities_total", s.entities_total);
  j.Field("converged_subscribers", static_cast<uint64_t>(s.converge_ms.n));
  WriteSpread(j, "converge_ms", s.converge_ms, 3);
  WriteSpread(j, "sentinel_after_ack_ms", s.after_ack_ms, 3);
  j.Field("sentinel_ack_ms", r.sentinel_ack_ms, 3);
}

void WriteWorkersJson(util::JsonWriter& j, const LoadReport& r) {
  j.Key("per_worker").BeginArray();
  for (const auto& w : r.workers) {
    j.BeginObject().Field("source", w.source);
    j.Field("ops_per_sec", static_cast<double>(w.acked_in_time) / r.seconds, 1);
    j.Field("sent", w.sent).Field("acked", w.acked).Field("errors", w.errors);
    j.Field("reconnects", w.reconnects).Field("ack_p99_ms", MsOfNs(w.ack_p99_ns), 2);
    if (!w.first_error.empty()) j.Field("first_error", w.first_error);
    j.EndObject();
  }
  j.EndArray();
}

void WriteTimelineJson(util::JsonWriter& j, const LoadReport& r) {
  j.Field("writers_start_s", r.writers_start_s, 3);
  j.Key("timeline").BeginArray();
  for (const LoadSample& s : r.timeline) {
    j.BeginObject().Field("t", s.t, 3).Field("acked", s.acked).Field("changes", s.changes);
    j.Field("queries", s.queries).Field("snapshot_entries", s.snapshot_entries).EndObject();
  }
  j.EndArray();
}

std::string TargetLine(const TargetResult& t) {
  return fmt::format("- {}{}: {:.{}f}{}{} (target {} {}{}: {}).", t.text,
                     t.run.empty() ? "" : ", " + t.run, t.value, t.decimals, t.unit,
                     t.run.empty() ? " at worst" : "", t.at_most ? "≤" : "≥", t.limit, t.unit,
                     t.met ? "met" : "**missed**");
}

std::string ScenarioMarkdown(const ScenarioResult& s) {
  std::string out = fmt::format("\n## {}\n\n", s.title);
  if (!s.intro.empty()) out += s.intro + "\n";
  for (const BenchRun& run : s.runs) {
    if (s.load_tables && run.ok())
      out += (s.intro.empty() ? "" : "\n") + LoadMarkdown(run.options, run.report);
  }
  for (const Table& t : s.tables)
    out += "\n" + Markdown(t);
  for (const std::string& f : s.failures)
    out += fmt::format("\n**{}**\n", f);
  if (!s.targets.empty()) out += "\nTargets:\n\n";
  for (const TargetResult& t : s.targets)
    out += TargetLine(t) + "\n";
  for (const std::string& note : s.notes)
    out += "\n" + note + "\n";
  if (!s.outro.empty()) out += "\n" + s.outro + "\n";
  return out;
}

void WriteScenarioJson(util::JsonWriter& j, const ScenarioResult& s) {
  if (s.single_run) {
    if (s.runs.empty() || !s.runs.front().ok()) {
      j.Null();
    } else {
      WriteLoadJson(j, s.runs.front().options, s.runs.front().report);
    }
    return;
  }
  std::vector<std::string> groups;
  for (const BenchRun& run : s.runs) {
    if (std::find(groups.begin(), groups.end(), run.group) == groups.end())
      groups.push_back(run.group);
  }
  bool grouped = !(groups.size() == 1 && groups.front().empty());
  if (grouped) j.BeginObject();
  for (const std::string& g : groups) {
    if (grouped) j.Key(g);
    j.BeginArray();
    for (const BenchRun& run : s.runs) {
      if (run.group != g || !run.ok()) continue;
      j.BeginObject();
      if (!run.key.empty()) j.Field("run", run.key);
      for (const auto& [k, v] : run.tags)
        j.Field(k, v);
      j.Key("load");
      WriteLoadJson(j, run.options, run.report);
      j.EndObject();
    }
    j.EndArray();
  }
  if (grouped) j.EndObject();
}

void WriteTargetsJson(util::JsonWriter& j, const BenchResult& b) {
  j.Key("targets").BeginArray();
  for (const ScenarioResult& s : b.scenarios) {
    for (const TargetResult& t : s.targets) {
      j.BeginObject().Field("scenario", s.name).Field("target", t.text).Field("run", t.run);
      j.Key("value").Double(t.value).Key("limit").Double(t.limit).Field("unit", t.unit);
      j.Field("at_most", t.at_most).Field("met", t.met).EndObject();
    }
  }
  j.EndArray();
}

}  // namespace

util::Status ReportFile::Open(std::string flag, std::string path) {
  flag_ = std::move(flag);
  path_ = std::move(path);
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) return util::Status::Error(fmt::format("{}: cannot write '{}'", flag_, path_));
  return util::Status::Ok();
}

util::Status ReportFile::Write(const std::string& text) {
  out_ << text;
  out_.flush();
  if (!out_) return util::Status::Error(fmt::format("{}: cannot write '{}'", flag_, path_));
  return util::Status::Ok();
}

std::string Human(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.0f}K", v / 1e3);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::vector<Table> LoadTables(const LoadOptions& o, const LoadReport& r) {
  return {ConfigurationTable(o), ResultsTable(o, r)};
}

std::vector<std::string> LoadErrorLines(const LoadReport& r) {
  std::vector<std::string> out;
  for (const auto& w : r.workers) {
    if (!w.first_error.empty())
      out.push_back(fmt::format("first error of {}: {}", w.source, w.first_error));
  }
  if (!r.first_reader_error.empty()) out.push_back("first reader error: " + r.first_reader_error);
  for (size_t i = 0; i < r.subscribers.size(); ++i) {
    if (!r.subscribers[i].first_error.empty()) {
      out.push_back(
          fmt::format("first error of subscriber {}: {}", i + 1, r.subscribers[i].first_error));
      break;
    }
  }
  if (!r.sentinel_error.empty()) out.push_back(r.sentinel_error);
  return out;
}

std::string LoadMarkdown(const LoadOptions& o, const LoadReport& r) {
  std::string out;
  for (const Table& t : LoadTables(o, r))
    out += (out.empty() ? "" : "\n") + Markdown(t);
  for (const std::string& line : LoadErrorLines(r))
    out += "\n" + line + "\n";
  return out;
}

void WriteLoadJson(util::JsonWriter& j, const LoadOptions& o, const LoadReport& r) {
  j.BeginObject();
  j.Field("server", o.server).Field("workers", o.workers).Field("entities", o.entities);
  j.Field("schema", o.schema)
      .Field("mix", o.mix)
      .Field("hot_pct", static_cast<uint64_t>(o.hot_pct));
  j.Field("rate", o.rate).Field("duration_s", r.seconds, 3).Field("readers", o.readers);
  j.Field("subscribers", o.subscribers).Field("bootstrap", o.bootstrap);
  j.Field("include_prev", o.include_prev).Field("window_us", r.window_us);
  j.Field("ops_per_sec", r.Throughput(), 1).Field("total_ops", r.TotalSent());
  j.Field("acked_ops", r.TotalAcked()).Field("errors", r.TotalErrors());
  j.Field("coalescing_ratio", r.CoalescingRatio(), 3);
  WritePercentiles(j, "ack_latency_ms", r.ack_latency_ns, 1e6, 2);
  j.Field("ack_latency_samples", r.ack_latency_ns.count());
  for (const char* stage : {"queue", "seal", "durable"}) {
    for (const char* q : {"p50", "p99"}) {
      std::string name = fmt::format("window_{}_{}_us", stage, q);
      j.Field("server_" + name, r.Stat(r.stats_after, name));
    }
  }
  j.Field("queries", r.query_ns.count()).Field("query_found", r.queries_found);
  WritePercentiles(j, "query_us", r.query_ns, 1e3, 1);
  if (o.subscribers > 0) WriteSubscriberJson(j, r);
  WriteWorkersJson(j, r);
  WriteTimelineJson(j, r);
  j.EndObject();
}

std::string LoadJson(const LoadOptions& o, const LoadReport& r) {
  util::JsonWriter j;
  WriteLoadJson(j, o, r);
  return j.Take();
}

Table BenchHeader(const BenchResult& b) {
  const Machine& m = b.machine;
  Table head{"", {"Component", "Detail"}, {}};
  head.rows = {
      {"Machine", fmt::format("{}, {} cores, {} memory", m.cpu, m.cores, m.memory)},
      {"OS", m.os},
      {"Setup", b.server.empty() ? "Embedded server and load generator in one process, on loopback"
                                 : "External server " + b.server},
      {"Build", b.build},
      {"fsync", b.server.empty() ? b.fsync : "as the server runs"},
      {"Date", m.date},
      {"Duration", fmt::format("{}s per measurement{}", b.duration_s, b.quick ? " (--quick)" : "")},
  };
  return head;
}

std::string BenchMarkdown(const BenchResult& b) {
  Table head = BenchHeader(b);
  std::string out = "# convergence performance\n\n" + Markdown(head);
  for (const ScenarioResult& s : b.scenarios)
    out += ScenarioMarkdown(s);
  return out;
}

std::string BenchJson(const BenchResult& b) {
  util::JsonWriter j;
  j.BeginObject().Key("machine").BeginObject();
  j.Field("cpu", b.machine.cpu).Field("cores", b.machine.cores);
  j.Field("memory", b.machine.memory).Field("os", b.machine.os).EndObject();
  j.Field("build", b.build).Field("fsync", b.fsync).Field("date", b.machine.date);
  j.Field("duration_s", b.duration_s, 1);
  j.Key("scenarios").BeginObject();
  for (const ScenarioResult& s : b.scenarios) {
    j.Key(s.name);
    WriteScenarioJson(j, s);
  }
  j.EndObject();
  WriteTargetsJson(j, b);
  j.EndObject();
  return j.Take();
}

}  // namespace conv::cmd
