// stock_server: grpc.testing.BenchmarkService on Debian's libgrpc++ (1.51), the baseline the
// node is measured against in bench/. One binary, two of gRPC's server APIs, as gRPC's own
// qps benchmark has them:
//   --api callback   grpc::CallbackService with ServerUnaryReactor / ServerBidiReactor
//   --api sync       grpc::Service with blocking handlers on gRPC's sync thread pool
//
//   stock_server --port N --api callback|sync [--sync-max-threads N]
//
// Prints "listening on 127.0.0.1:PORT" once serving (N may be 0: the kernel picks a port);
// SIGTERM or SIGINT shuts the server down and exits 0.
//
// Fairness: everything not named here is left at gRPC's defaults (no limit on concurrent
// streams, flow-control windows, keepalive, ...). The caller pins the process to one core
// with taskset; the thread settings below are the ones that make sense for one core.

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <pthread.h>

#include "benchmark_service.grpc.pb.h"

namespace {

using grpc::testing::BenchmarkService;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;

// Same as the node's default receive limit, so both reject the same oversized messages.
constexpr int kMaxReceiveMessage = 4 * 1024 * 1024;

// Sync API only: gRPC's sync server runs each call on a thread of its own pool, growing it
// while calls wait, and answers RESOURCE_EXHAUSTED when the ResourceQuota allows no more
// threads. The cap must bound the pool without failing calls, or stock would be measured
// with an artificial limit: measured on one core, unary load peaks near 66 threads even at
// 100 connections x 100 streams, while caps of 16 (at 50 x 10) and 64 (at 100 x 100) failed
// a few percent of the calls. Every open StreamingCall holds one thread for its whole life,
// so the cap is also the most concurrent ping-pong streams the sync server serves.
// --sync-max-threads overrides it (0: no quota).
constexpr int kSyncMaxThreads = 256;

// The response carries response_size zero bytes, as in gRPC's qps benchmark.
void fill_response(const SimpleRequest &req, SimpleResponse *resp) {
	if (req.response_size() > 0) {
		resp->mutable_payload()->mutable_body()->assign(static_cast<size_t>(req.response_size()),
		                                                '\0');
	}
}

class CallbackImpl final : public BenchmarkService::CallbackService {
	grpc::ServerUnaryReactor *UnaryCall(grpc::CallbackServerContext *ctx, const SimpleRequest *req,
	                                    SimpleResponse *resp) override {
		fill_response(*req, resp);
		grpc::ServerUnaryReactor *reactor = ctx->DefaultReactor();
		reactor->Finish(grpc::Status::OK);
		return reactor;
	}

	// Ping-pong: read one request, write its response, repeat until the client half-closes.
	class PingPong final : public grpc::ServerBidiReactor<SimpleRequest, SimpleResponse> {
	  public:
		PingPong() { StartRead(&req_); }

		void OnReadDone(bool ok) override {
			if (!ok) { // half-close (or the call is gone)
				Finish(grpc::Status::OK);
				return;
			}
			resp_.Clear();
			fill_response(req_, &resp_);
			StartWrite(&resp_);
		}

		void OnWriteDone(bool ok) override {
			if (!ok) {
				Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
				return;
			}
			StartRead(&req_);
		}

		void OnDone() override { delete this; }

	  private:
		SimpleRequest req_;
		SimpleResponse resp_;
	};

	grpc::ServerBidiReactor<SimpleRequest, SimpleResponse> *
	StreamingCall(grpc::CallbackServerContext *) override {
		return new PingPong();
	}
};

class SyncImpl final : public BenchmarkService::Service {
	grpc::Status UnaryCall(grpc::ServerContext *, const SimpleRequest *req,
	                       SimpleResponse *resp) override {
		fill_response(*req, resp);
		return grpc::Status::OK;
	}

	grpc::Status
	StreamingCall(grpc::ServerContext *,
	              grpc::ServerReaderWriter<SimpleResponse, SimpleRequest> *stream) override {
		SimpleRequest req;
		SimpleResponse resp;
		while (stream->Read(&req)) {
			resp.Clear();
			fill_response(req, &resp);
			if (!stream->Write(resp)) {
				break;
			}
		}
		return grpc::Status::OK;
	}
};

std::string read_file(const std::string &path) {
	FILE *f = std::fopen(path.c_str(), "rb");
	if (!f) {
		std::fprintf(stderr, "stock_server: cannot read %s\n", path.c_str());
		std::exit(2);
	}
	std::string s;
	char buf[4096];
	size_t n;
	while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
		s.append(buf, n);
	}
	std::fclose(f);
	return s;
}

[[noreturn]] void usage(const char *msg) {
	std::fprintf(stderr,
	             "stock_server: %s\n"
	             "usage: stock_server --port N --api callback|sync [--sync-max-threads N]\n"
	             "       [--tls-cert PEM --tls-key PEM]\n",
	             msg);
	std::exit(2);
}

} // namespace

int main(int argc, char **argv) {
	long port = -1;
	long sync_max_threads = kSyncMaxThreads;
	std::string api, tls_cert, tls_key;
	for (int i = 1; i < argc; i++) {
		if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end = nullptr;
			port = std::strtol(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end != '\0' || port < 0 || port > 65535) {
				usage("bad --port");
			}
		} else if (std::strcmp(argv[i], "--sync-max-threads") == 0 && i + 1 < argc) {
			char *end = nullptr;
			sync_max_threads = std::strtol(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end != '\0' || sync_max_threads < 0 ||
			    sync_max_threads > 100000) {
				usage("bad --sync-max-threads");
			}
		} else if (std::strcmp(argv[i], "--api") == 0 && i + 1 < argc) {
			api = argv[++i];
		} else if (std::strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
			tls_cert = argv[++i];
		} else if (std::strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
			tls_key = argv[++i];
		} else {
			usage("unknown argument");
		}
	}
	if (port < 0) {
		usage("--port is required");
	}
	if (api != "callback" && api != "sync") {
		usage("--api must be callback or sync");
	}

	// Signals are taken by sigwait below; block them before gRPC starts its threads so that
	// every thread inherits the mask and none of them is interrupted by the signal.
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, nullptr);

	CallbackImpl callback_service;
	SyncImpl sync_service;

	grpc::ServerBuilder builder;
	int bound_port = 0;
	std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
	if (!tls_cert.empty()) {
		grpc::SslServerCredentialsOptions ssl;
		ssl.pem_key_cert_pairs.push_back({read_file(tls_key), read_file(tls_cert)});
		creds = grpc::SslServerCredentials(ssl);
	}
	builder.AddListeningPort("127.0.0.1:" + std::to_string(port), creds, &bound_port);
	builder.SetMaxReceiveMessageSize(kMaxReceiveMessage);
	if (api == "callback") {
		// Callback services run on gRPC's internal callback completion queue and its own
		// executor threads; 1.51 offers no knob for them, so they stay at the defaults.
		builder.RegisterService(&callback_service);
	} else {
		builder.RegisterService(&sync_service);
		// Default NUM_CQS is one per CPU of the machine; the server runs on one core, so one
		// completion queue. Pollers stay at their defaults (min 1, max 2).
		builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
		if (sync_max_threads > 0) {
			grpc::ResourceQuota quota("stock_server");
			quota.SetMaxThreads(static_cast<int>(sync_max_threads));
			builder.SetResourceQuota(quota);
		}
	}

	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server || bound_port == 0) {
		std::fprintf(stderr, "stock_server: cannot serve on 127.0.0.1:%ld\n", port);
		return 1;
	}
	std::printf("listening on 127.0.0.1:%d\n", bound_port);
	std::fflush(stdout);

	int sig = 0;
	while (sigwait(&stop, &sig) != 0) {
	}
	// Open streams get a moment to end, then are cancelled, so shutdown never hangs on a
	// client that keeps a stream open.
	server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
	server->Wait();
	return 0;
}
