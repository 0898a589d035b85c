// TLS end to end over loopback, with certificates the openssl command makes for each
// test: a good chain, a wrong CA, an expired certificate, mutual TLS, a plain-TCP
// client on the TLS port, certificate reload, HTTPS metrics and where a server may
// listen without a token.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "net/metrics_server.h"
#include "net/tls.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/test_server.h"
#include "support/ws_client.h"
#include "util/clock.h"

using namespace conv;
using net::FrameType;
using testing::IsType;
using testing::kReplyTimeout;
using testing::Player;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

void Openssl(const std::string& args) {
  std::string cmd = "openssl " + args + " >/dev/null 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
}

// Certificates in a scratch directory: NAME.pem and NAME.key.
class Certs {
 public:
  Certs() {
    std::string ext = dir_.File("ext");
    FILE* f = std::fopen(ext.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", f);
    std::fclose(f);
  }
  std::string Pem(std::string_view name) const { return dir_.File(std::string(name) + ".pem"); }
  std::string Key(std::string_view name) const { return dir_.File(std::string(name) + ".key"); }

  // A self-signed CA.
  void Ca(std::string_view name) {
    Openssl(fmt::format(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {} -out {} "
        "-days 30 -subj /CN={}",
        Key(name), Pem(name), name));
  }
  // A certificate for localhost and 127.0.0.1 signed by `ca`, valid for `days` from now
  // (negative: it expired).
  void Leaf(std::string_view name, std::string_view ca, int days = 30) {
    std::string csr = dir_.File(std::string(name) + ".csr");
    Openssl(fmt::format(
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {} -out {} "
        "-subj /CN=localhost",
        Key(name), csr));
    Openssl(
        fmt::format("x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -out {} -days {} "
                    "-extfile {}",
                    csr, Pem(ca), Key(ca), Pem(name), days, dir_.File("ext")));
  }
  std::string Write(std::string_view name, std::string_view text) {
    std::string path = dir_.File(std::string(name));
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    return path;
  }

 private:
  testing::TempDir dir_{"conv-tls"};
};

std::shared_ptr<net::TlsServerContext> ServerTls(const Certs& c, std::string_view leaf,
                                                 std::string_view client_ca = "") {
  auto t = net::TlsServerContext::Load(
      {c.Pem(leaf), c.Key(leaf), client_ca.empty() ? "" : c.Pem(client_ca)});
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.message()));
  return std::move(t).value();
}

net::SslCtxPtr ClientTls(const Certs& c, std::string_view ca, std::string_view leaf = "") {
  net::TlsClientOptions o;
  o.enabled = true;
  o.ca_file = c.Pem(ca);
  if (!leaf.empty()) {
    o.cert_file = c.Pem(leaf);
    o.key_file = c.Key(leaf);
  }
  auto ctx = net::MakeTlsClientContext(o);
  REQUIRE_MESSAGE(ctx.ok(), (ctx.ok() ? "" : ctx.message()));
  return std::move(ctx).value();
}

testing::TestServerOptions WithTls(std::shared_ptr<net::TlsServerContext> tls) {
  testing::TestServerOptions o;
  o.server.tls = std::move(tls);
  return o;
}

util::Result<std::unique_ptr<net::Client>> Dial(testing::TestServer& ts, const net::SslCtxPtr& tls,
                                                const std::string& source = "") {
  net::Hello hello;
  hello.source = source;
  return net::Client::Connect(ts.address(), hello, kReplyTimeout, tls);
}

std::unique_ptr<net::Client> MustDial(testing::TestServer& ts, const net::SslCtxPtr& tls,
                                      const std::string& source = "") {
  auto c = Dial(ts, tls, source);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

// A server that still serves: a TLS reader gets an answer to QUERY.
void CheckServing(testing::TestServer& ts, const net::SslCtxPtr& tls) {
  auto c = MustDial(ts, tls);
  auto r = c->Query(Player(*c), "nobody", false);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK_FALSE(r->found);
}

}  // namespace

TEST_CASE("tls: writes, QUERY and SUBSCRIBE work over TLS end to end") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  testing::TestServer ts(WithTls(ServerTls(certs, "server")));
  net::SslCtxPtr tls = ClientTls(certs, "ca");

  // The subscriber and the reader say HELLO without a source: each is handed over,
  // TLS state and all, to the read thread after its HELLO.
  auto sub = MustDial(ts, tls);
  net::Subscribe s;
  s.sub = 7;
  s.schema_id = kPlayer;
  s.flags = net::kSubscribeBootstrap;
  REQUIRE(sub->Subscribe(s).ok());
  // Live once its (empty) snapshot ended: every later change is notified.
  for (bool live = false; !live;) {
    auto f = sub->ReadFrame();
    REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.message()));
    live = IsType(*f, FrameType::kSnapshotEnd);
  }

  auto writer = MustDial(ts, tls, "tls-writer");
  const engine::Schema& player = Player(*writer);
  // Enough bytes for many TLS records, in one send.
  std::string batch;
  constexpr uint64_t kOps = 2000;
  for (uint64_t seq = 1; seq <= kOps; ++seq) {
    batch +=
        WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("p{}", seq % 50),
                   Record(player, {{"name", std::string("over tls")}, {"score", int64_t(seq)}}));
  }
  REQUIRE(writer->Send(batch).ok());
  REQUIRE(WaitForAck(*writer, kOps));

  auto reader = MustDial(ts, tls);
  auto r = reader->Query(Player(*reader), "p0", true);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK(r->found);
  CHECK(r->claims.size() == 1);

  bool notified = false;
  for (int i = 0; i < 100 && !notified; ++i) {
    auto f = sub->ReadFrame();
    REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.message()));
    notified = IsType(*f, FrameType::kNotify);
  }
  CHECK(notified);
}

TEST_CASE("tls: WebSocket over TLS (wss): upgrade, writes, and a protocol error's close code") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  testing::TestServerOptions o = WithTls(ServerTls(certs, "server"));
  o.server.ws_listen = "127.0.0.1:0";
  testing::TestServer ts(o);
  net::SslCtxPtr tls = ClientTls(certs, "ca");
  testing::WsTestClient ws(ts.server().ws_port(), tls);
  ws.Open("wss-writer");
  auto reader = MustDial(ts, tls);
  REQUIRE(ws.SendMessage(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "wss",
                                    Record(Player(*reader), {{"score", int64_t{3}}}))));
  auto ack = ws.ReadFrame();
  REQUIRE_MESSAGE(ack.ok(), (ack.ok() ? "" : ack.message()));
  CHECK(IsType(*ack, FrameType::kAck));
  REQUIRE(ws.Send(testing::WsTestClient::Frame(2, "x", true, false)));
  CHECK(ws.ReadClose() == 1002);
  CheckServing(ts, tls);
}

TEST_CASE("tls: a client that does not trust the server's CA refuses it, the server serves on") {
  Certs certs;
  certs.Ca("ca");
  certs.Ca("other");
  certs.Leaf("server", "ca");
  testing::TestServer ts(WithTls(ServerTls(certs, "server")));
  auto c = Dial(ts, ClientTls(certs, "other"));
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("TLS handshake failed") != std::string::npos);
  CHECK(c.message().find("certificate") != std::string::npos);
  CheckServing(ts, ClientTls(certs, "ca"));
}

TEST_CASE("tls: an expired server certificate is refused by the client") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("expired", "ca", -1);
  testing::TestServer ts(WithTls(ServerTls(certs, "expired")));
  auto c = Dial(ts, ClientTls(certs, "ca"));
  REQUIRE_FALSE(c.ok());
  CHECK_MESSAGE(c.message().find("expired") != std::string::npos, c.message());
}

TEST_CASE("tls: under mutual TLS a client without a good certificate is refused") {
  Certs certs;
  certs.Ca("ca");
  certs.Ca("other");
  certs.Leaf("server", "ca");
  certs.Leaf("client", "ca");
  certs.Leaf("stranger", "other");
  testing::TestServer ts(WithTls(ServerTls(certs, "server", "ca")));

  auto none = Dial(ts, ClientTls(certs, "ca"));
  REQUIRE_FALSE(none.ok());
  CHECK_MESSAGE(none.message().find("certificate") != std::string::npos, none.message());
  auto stranger = Dial(ts, ClientTls(certs, "ca", "stranger"));
  REQUIRE_FALSE(stranger.ok());

  net::SslCtxPtr good = ClientTls(certs, "ca", "client");
  CheckServing(ts, good);
  auto writer = MustDial(ts, good, "mtls-writer");
  REQUIRE(writer
              ->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "a",
                                Record(Player(*writer), {{"score", int64_t{1}}})))
              .ok());
  CHECK(WaitForAck(*writer, 1));
}

TEST_CASE("tls: a plain-TCP client on the TLS port gets a clear error in clear") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  testing::TestServer ts(WithTls(ServerTls(certs, "server")));
  for (const char* source : {"", "plain-writer"}) {
    auto c = Dial(ts, nullptr, source);
    REQUIRE_FALSE(c.ok());
    CHECK_MESSAGE(c.message().find("TLS connections only") != std::string::npos, c.message());
  }
  CheckServing(ts, ClientTls(certs, "ca"));
}

TEST_CASE("tls: a connection that does not finish its TLS handshake in time is closed") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  testing::TestServerOptions o = WithTls(ServerTls(certs, "server"));
  o.server.handshake_timeout = std::chrono::milliseconds(300);
  testing::TestServer ts(o);
  testing::RawConnection silent(ts.port());
  testing::RawConnection partial(ts.port());
  REQUIRE(partial.Send(std::string("\x16\x03\x01", 3)));  // a record header, no more
  for (testing::RawConnection* raw : {&silent, &partial}) {
    auto f = raw->ReadFrame();
    CHECK_FALSE(f.ok());  // nothing in clear: the handshake never finished
    CHECK(raw->closed());
  }
  CheckServing(ts, ClientTls(certs, "ca"));
}

TEST_CASE("tls: a TLS client on a plain port fails its handshake with a hint") {
  testing::TestServer ts;
  Certs certs;
  certs.Ca("ca");
  auto c = Dial(ts, ClientTls(certs, "ca"));
  REQUIRE_FALSE(c.ok());
  CHECK_MESSAGE(c.message().find("TLS handshake failed") != std::string::npos, c.message());
  auto plain = ts.Connect();  // unharmed
  CHECK(plain->Stats().ok());
}

TEST_CASE("tls: a reload picks up new certificate files, a failed one keeps the old") {
  Certs certs;
  certs.Ca("old-ca");
  certs.Ca("new-ca");
  certs.Leaf("old", "old-ca");
  certs.Leaf("new", "new-ca");
  // The server's files: first the old certificate.
  std::string cert = certs.Write("live.pem", "");
  std::string key = certs.Write("live.key", "");
  std::filesystem::copy_file(certs.Pem("old"), cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(certs.Key("old"), key,
                             std::filesystem::copy_options::overwrite_existing);
  auto loaded = net::TlsServerContext::Load({cert, key, ""});
  REQUIRE(loaded.ok());
  std::shared_ptr<net::TlsServerContext> tls = std::move(loaded).value();
  testing::TestServer ts(WithTls(tls));
  net::SslCtxPtr trusts_old = ClientTls(certs, "old-ca");
  net::SslCtxPtr trusts_new = ClientTls(certs, "new-ca");
  auto before = MustDial(ts, trusts_old);  // stays open across the reload
  REQUIRE_FALSE(Dial(ts, trusts_new).ok());

  std::filesystem::copy_file(certs.Pem("new"), cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(certs.Key("new"), key,
                             std::filesystem::copy_options::overwrite_existing);
  util::Status st = tls->Reload();
  REQUIRE_MESSAGE(st.ok(), st.message());
  CheckServing(ts, trusts_new);
  REQUIRE_FALSE(Dial(ts, trusts_old).ok());
  CHECK(before->Stats().ok());  // a connection made before goes on

  // A broken file: the reload fails, says which file, and the new certificate stays.
  certs.Write("live.pem", "not a certificate\n");
  st = tls->Reload();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("--tls-cert") != std::string::npos);
  CHECK(st.message().find(cert) != std::string::npos);
  CheckServing(ts, trusts_new);
  // A key that is not the certificate's.
  std::filesystem::copy_file(certs.Pem("new"), cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(certs.Key("old"), key,
                             std::filesystem::copy_options::overwrite_existing);
  st = tls->Reload();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("is not the key of the certificate") != std::string::npos);
  CheckServing(ts, trusts_new);
}

TEST_CASE("tls: bad certificate, key and CA files are refused with the flag and the file") {
  Certs certs;
  certs.Ca("ca");
  certs.Ca("other");
  certs.Leaf("server", "ca");
  std::string junk = certs.Write("junk.pem", "junk\n");
  auto bad_cert = net::TlsServerContext::Load({junk, certs.Key("server"), ""});
  REQUIRE_FALSE(bad_cert.ok());
  CHECK(bad_cert.message().find("--tls-cert: cannot use " + junk) == 0);
  auto bad_key = net::TlsServerContext::Load({certs.Pem("server"), junk, ""});
  REQUIRE_FALSE(bad_key.ok());
  CHECK(bad_key.message().find("--tls-key: cannot use " + junk) == 0);
  auto wrong_key = net::TlsServerContext::Load({certs.Pem("server"), certs.Key("ca"), ""});
  REQUIRE_FALSE(wrong_key.ok());
  CHECK(wrong_key.message().find("is not the key of the certificate") != std::string::npos);
  auto bad_ca = net::TlsServerContext::Load({certs.Pem("server"), certs.Key("server"), junk});
  REQUIRE_FALSE(bad_ca.ok());
  CHECK(bad_ca.message().find("--tls-client-ca: cannot use " + junk) == 0);

  net::TlsClientOptions o;
  o.enabled = true;
  o.ca_file = junk;
  auto c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("--tls-ca: cannot use " + junk) == 0);
  o.ca_file = certs.Pem("ca");
  o.cert_file = certs.Pem("server");
  c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message() == "--tls-cert needs --tls-key");
  o.cert_file.clear();
  o.key_file = certs.Key("server");
  c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message() == "--tls-key needs --tls-cert");
  o.cert_file = junk;
  c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("--tls-cert: cannot use " + junk) == 0);
  o.cert_file = certs.Pem("server");
  o.key_file = junk;
  c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("--tls-key: cannot use " + junk) == 0);
  o.key_file = certs.Key("other");
  c = net::MakeTlsClientContext(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("is not the key of the certificate") != std::string::npos);
}

TEST_CASE("tls: a non-loopback listen needs an auth token or mutual TLS, not TLS alone") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::Engine engine({}, schemas, sources);
  util::Logger log(util::LogLevel::kOff);
  net::ServerOptions o;
  o.listen = "0.0.0.0:0";
  o.tls = ServerTls(certs, "server");
  net::Server tls_only(engine, o, log);
  util::Status st = tls_only.Listen();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("mutual TLS") != std::string::npos);
  net::MetricsServerOptions mo;
  mo.listen = "0.0.0.0:0";
  mo.tls = o.tls;
  net::MetricsServer metrics_tls_only(
      mo, [] { return std::string(); }, log);
  CHECK_FALSE(metrics_tls_only.Listen().ok());

  o.tls = ServerTls(certs, "server", "ca");
  net::Server mutual(engine, o, log);
  st = mutual.Listen();
  CHECK_MESSAGE(st.ok(), st.message());
  mo.tls = o.tls;
  net::MetricsServer metrics_mutual(
      mo, [] { return std::string(); }, log);
  st = metrics_mutual.Listen();
  CHECK_MESSAGE(st.ok(), st.message());
}

TEST_CASE("tls: metrics are served over HTTPS with the server's certificate") {
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  util::Logger log(util::LogLevel::kOff);
  net::MetricsServerOptions mo;
  mo.listen = "127.0.0.1:0";
  mo.tls = ServerTls(certs, "server");
  net::MetricsServer metrics(
      mo, [] { return std::string("up 1\n"); }, log);
  REQUIRE(metrics.Listen().ok());
  metrics.Start();

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(metrics.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  auto t = net::Transport::Connect(fd, ClientTls(certs, "ca"), "127.0.0.1", 10'000);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.message()));
  std::string request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  std::string reply;
  bool done = false;
  size_t sent = 0;
  uint64_t deadline = util::MonoNanos() + 10'000'000'000ull;
  while (!done && util::MonoNanos() < deadline) {
    if (sent < request.size()) {
      ssize_t n = t->Write(request.data() + sent, request.size() - sent);
      if (n > 0) sent += static_cast<size_t>(n);
    }
    char buf[4096];
    ssize_t n = t->Read(buf, sizeof(buf));
    if (n > 0) reply.append(buf, static_cast<size_t>(n));
    if (n == 0 || (n < 0 && errno != EAGAIN)) done = true;
    if (n < 0 && errno == EAGAIN) ::usleep(1000);
  }
  ::close(fd);
  // Plain HTTP on the HTTPS port: no answer, the connection is closed.
  auto plain = testing::HttpGet(metrics.port(), "/metrics");
  CHECK((!plain.ok() || plain->status == 0));
  metrics.Stop();
  CHECK(reply.find("HTTP/1.1 200") == 0);
  CHECK(reply.find("up 1") != std::string::npos);
}

namespace {

// Waits (bounded) until the file at `path` contains `text`.
bool FileGetsText(const std::string& path, std::string_view text) {
  for (int i = 0; i < 200; ++i) {
    if (testing::ReadFileOrEmpty(path).find(text) != std::string::npos) return true;
    ::usleep(50'000);
  }
  return false;
}

}  // namespace

TEST_CASE("tls: the binary's TLS flags, SIGHUP reload and the client tools over TLS") {
  using testing::RunProcess;
  Certs certs;
  certs.Ca("ca");
  certs.Leaf("server", "ca");
  testing::TempDir dir("conv-tls-cli");
  const std::string data = dir.File("data");
  auto serve = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                     "127.0.0.1:0", "--data-dir", data};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunProcess(argv);
  };
  auto r = serve({"--tls-key", certs.Key("server")});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--tls-key needs --tls-cert") != std::string::npos, r.err);
  r = serve({"--tls-cert", certs.Pem("server")});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--tls-cert needs --tls-key") != std::string::npos, r.err);
  r = serve({"--tls-client-ca", certs.Pem("ca")});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--tls-client-ca needs --tls-cert") != std::string::npos, r.err);
  r = serve({"--tls-cert", certs.Key("server"), "--tls-key", certs.Key("server")});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--tls-cert: cannot use") != std::string::npos, r.err);
  r = RunProcess({CONV_BINARY, "bench", "--quick", "--tls"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("need --server") != std::string::npos, r.err);

  // The server's files are copies, so that the test can break and mend them.
  std::string cert = certs.Write("live.pem", testing::ReadFileOrEmpty(certs.Pem("server")));
  std::string key = certs.Write("live.key", testing::ReadFileOrEmpty(certs.Key("server")));
  std::string err_path = dir.File("stderr");
  auto child = testing::ChildProcess::Start(
      {CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--partitions", "1",
       "--io-threads", "1", "--window", "1ms", "--tls-cert", cert, "--tls-key", key,
       "--metrics-listen", "127.0.0.1:0"},
      err_path);
  REQUIRE_MESSAGE(child.ok(), child.message());
  auto listening = (*child)->WaitForLine("listening on ", std::chrono::seconds(30));
  REQUIRE_MESSAGE(listening.ok(), listening.message(), testing::ReadFileOrEmpty(err_path));
  std::string server = listening->substr(std::string("listening on ").size());
  auto metrics_line = (*child)->WaitForLine("metrics on https://", std::chrono::seconds(10));
  REQUIRE_MESSAGE(metrics_line.ok(), metrics_line.message());

  r = RunProcess({CONV_BINARY, "load", "--server", server, "--tls-ca", certs.Pem("ca"), "--workers",
                  "2", "--readers", "1", "--subscribers", "1", "--duration", "1s", "--entities",
                  "100", "--quiet"});
  CHECK_MESSAGE(r.exit_code == 0, r.out, r.err);
  r = RunProcess({CONV_BINARY, "query", "--server", server, "--tls-ca", certs.Pem("ca"), "player",
                  "load-entity-that-is-not-there"});
  CHECK_MESSAGE(r.exit_code == 1, r.err);
  // Exit 4 (unknown schema) comes after the WELCOME: the handshake went through.
  r = RunProcess({CONV_BINARY, "subscribe", "--server", server, "--tls-ca", certs.Pem("ca"),
                  "no-such-schema"});
  CHECK_MESSAGE(r.exit_code == 4, r.err);
  r = RunProcess({CONV_BINARY, "query", "--server", server, "player", "x"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("TLS connections only") != std::string::npos, r.err);

  certs.Write("live.pem", "broken\n");
  (*child)->Signal(SIGHUP);
  CHECK(FileGetsText(err_path, "keeping the TLS certificate in use: --tls-cert: cannot use"));
  r = RunProcess(
      {CONV_BINARY, "query", "--server", server, "--tls-ca", certs.Pem("ca"), "player", "x"});
  CHECK_MESSAGE(r.exit_code == 1, r.err);  // the old certificate still serves
  certs.Write("live.pem", testing::ReadFileOrEmpty(certs.Pem("server")));
  (*child)->Signal(SIGHUP);
  CHECK(FileGetsText(err_path, "reloaded the TLS certificate"));
  (*child)->Signal(SIGTERM);
  CHECK((*child)->Wait(std::chrono::seconds(30)).has_value());
}
