// JacService from C++: list the models, describe one, then Predict and BatchJacobian on a small batch, and optionally
// time the single-sample Jacobian calls a control loop makes.
//
//   ./build.sh                                                   # stubs from src/Protos, then ./build/jacclient
//   ./build/jacclient --target 127.0.0.1:50051 --model pinn
//   ./build/jacclient --target 127.0.0.1:50051 --reference ../../tests/fixtures/reference/mlp_tanh.json
//   ./build/jacclient --target 127.0.0.1:50051 --model pinn --loop 2000      # latency of one Jacobian at a time
//   ./build/jacclient --target jac.example.com:50051 --ca ca.crt                                    # TLS
//   ./build/jacclient --target jac.example.com:50051 --ca ca.crt --cert client.crt --key client.key # mutual TLS
//
// With --reference, the inputs come from the reference file and every output and Jacobian must match it:
// max |got - ref| <= tolerance * max |ref| per tensor (the server computes in float32, the reference is float64).
// Exit status: 0 all good, 1 a mismatch, 2 a call or connection failed.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "jacservice/v1/jacservice.grpc.pb.h"

namespace pb = jacservice::v1;
using Clock = std::chrono::steady_clock;

namespace {

// Jacobians grow as batch * outputs * inputs; gRPC's default 4 MiB receive limit is too small for real models.
constexpr int kMaxMessageBytes = 64 << 20;
// A reference that is all zeros would otherwise demand bit-exact zeros from float32 arithmetic.
constexpr double kAbsoluteFloor = 1e-7;

struct RefTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
};

// One tests/fixtures/reference/*.json file; jacobians are keyed by wrt input, then output.
struct Reference {
  std::string path, model;
  std::map<std::string, RefTensor> inputs, outputs;
  std::map<std::string, std::map<std::string, RefTensor>> jacobians;
};

struct Options {
  std::string target = "127.0.0.1:50051", model, reference, ca, cert, key;
  double tolerance = 1e-4;
  double timeout_seconds = 10;
  int loop = 0;
};

// gRPC takes deadlines on the system clock.
std::chrono::system_clock::time_point Deadline(double seconds) {
  return std::chrono::system_clock::now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(seconds));
}

// A failed call, with the server's status.
struct CallFailed : std::runtime_error {
  grpc::Status status;
  explicit CallFailed(grpc::Status s) : std::runtime_error(s.error_message()), status(std::move(s)) {}
};

// The names the gRPC specification (and the other examples) use: NOT_FOUND, not 5.
std::string StatusName(grpc::StatusCode code) {
  static const char* const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                      "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(names)) ? names[i] : "CODE_" + std::to_string(i);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

RefTensor ToRef(const nlohmann::json& j) {
  return {j.at("shape").get<std::vector<int64_t>>(), j.at("data").get<std::vector<double>>()};
}

Reference LoadReference(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ReadFile(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  Reference ref{path, j.at("model").get<std::string>(), {}, {}, {}};
  for (auto& [name, t] : j.at("inputs").items()) ref.inputs[name] = ToRef(t);
  for (auto& [name, t] : j.at("outputs").items()) ref.outputs[name] = ToRef(t);
  for (auto& [wrt, outs] : j.at("jacobians").items())
    for (auto& [out, t] : outs.items()) ref.jacobians[wrt][out] = ToRef(t);
  return ref;
}

std::string ShapeText(const google::protobuf::RepeatedField<int64_t>& shape) {
  std::string text = "[";
  for (int i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  google::protobuf::RepeatedField<int64_t> field(shape.begin(), shape.end());
  return ShapeText(field);
}

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

std::string Preview(const google::protobuf::RepeatedField<float>& data) {
  std::string text = "[";
  for (int i = 0; i < data.size() && i < 4; i++) text += (i ? ", " : "") + Format("%.6g", data[i]);
  return text + (data.size() > 4 ? ", ...]" : "]");
}

std::string Signature(const google::protobuf::RepeatedPtrField<pb::TensorInfo>& tensors) {
  std::string text;
  for (const auto& t : tensors) text += (text.empty() ? "" : " ") + t.name() + ShapeText(t.shape()) + ":" + t.dtype();
  return text;
}

// Reference inputs are float32 values written in full, so the conversion is exact.
pb::Tensor ToTensor(const RefTensor& t) {
  pb::Tensor tensor;
  tensor.mutable_shape()->Add(t.shape.begin(), t.shape.end());
  for (double v : t.data) tensor.add_data(static_cast<float>(v));
  return tensor;
}

// Small deterministic values in [-0.3, 0.3] shaped like the model's inputs.
std::map<std::string, pb::Tensor> MadeUpInputs(const pb::ModelInfo& info, int64_t batch) {
  std::map<std::string, pb::Tensor> inputs;
  for (const auto& in : info.inputs()) {
    pb::Tensor& t = inputs[in.name()];
    t.add_shape(batch);
    int64_t size = batch;
    for (int i = 1; i < in.shape_size(); i++) {
      if (in.shape(i) < 0) throw std::runtime_error("input " + in.name() + " has a dynamic axis besides the batch; pass --reference");
      t.add_shape(in.shape(i));
      size *= in.shape(i);
    }
    for (int64_t i = 0; i < size; i++) t.add_data(0.1f * static_cast<float>(i % 7 - 3));
  }
  return inputs;
}

// Whether got matches want, with the error found or what differs.
std::pair<bool, std::string> Compare(const pb::Tensor* got, const RefTensor& want, double tolerance) {
  if (got == nullptr) return {false, "missing from the response"};
  if (ShapeText(got->shape()) != ShapeText(want.shape))
    return {false, "shape " + ShapeText(got->shape()) + ", expected " + ShapeText(want.shape)};
  if (static_cast<size_t>(got->data_size()) != want.data.size())
    return {false, std::to_string(got->data_size()) + " values, expected " + std::to_string(want.data.size())};
  double largest = 0, worst = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < want.data.size(); i++) {
    largest = std::max(largest, std::abs(want.data[i]));
    double error = std::abs(static_cast<double>(got->data(static_cast<int>(i))) - want.data[i]);
    if (error > worst || std::isnan(error)) worst = error, worst_at = i;
  }
  double allowed = std::max(tolerance * largest, kAbsoluteFloor);
  bool ok = worst <= allowed;  // false for NaN too
  return {ok, "max abs error " + Format("%.3g", worst) + " at flat index " + std::to_string(worst_at) + ", allowed " + Format("%.3g", allowed)};
}

class Example {
 public:
  Example(std::shared_ptr<grpc::Channel> channel, Options options)
      : stub_(pb::JacobianService::NewStub(channel)), o_(std::move(options)) {}

  // The calls in order; throws CallFailed on a failed call, else returns the exit status.
  int Run(const std::string& model, const std::optional<Reference>& ref) {
    pb::ListModelsResponse listing;
    Call(&pb::JacobianService::Stub::ListModels, pb::ListModelsRequest{}, &listing);
    std::string names;
    for (const auto& m : listing.models()) names += (names.empty() ? "" : ", ") + m.name() + "/" + m.version() + " " + m.state();
    std::printf("ListModels: %s\n", names.c_str());

    pb::GetModelRequest get;
    get.set_model(model);
    pb::ModelInfo info;
    Call(&pb::JacobianService::Stub::GetModel, get, &info);
    std::printf("GetModel %s: version %s, %s, opset %lld, inputs %s, outputs %s\n", info.name().c_str(), info.version().c_str(),
                info.state().c_str(), static_cast<long long>(info.opset()), Signature(info.inputs()).c_str(), Signature(info.outputs()).c_str());

    std::map<std::string, pb::Tensor> inputs;
    if (ref) {
      for (const auto& [name, t] : ref->inputs) inputs[name] = ToTensor(t);
    } else {
      inputs = MadeUpInputs(info, 2);
    }

    pb::PredictRequest predict;
    predict.set_model(model);
    predict.mutable_inputs()->insert(inputs.begin(), inputs.end());
    pb::PredictResponse predicted;
    Call(&pb::JacobianService::Stub::Predict, predict, &predicted);
    std::map<std::string, pb::Tensor> outputs(predicted.outputs().begin(), predicted.outputs().end());
    for (const auto& [name, t] : outputs)
      std::printf("Predict %s: %s%s = %s\n", model.c_str(), name.c_str(), ShapeText(t.shape()).c_str(), Preview(t.data()).c_str());

    // One BatchJacobian per float input: wrt picks the input to differentiate. Keyed "d<out>/d<wrt>".
    std::map<std::string, pb::Tensor> jacobians;
    for (const auto& in : info.inputs()) {
      if (in.dtype() != "float") continue;
      pb::BatchJacobianRequest request;
      request.set_model(model);
      request.set_wrt(in.name());
      request.mutable_inputs()->insert(inputs.begin(), inputs.end());
      pb::BatchJacobianResponse response;
      Call(&pb::JacobianService::Stub::BatchJacobian, request, &response);
      std::map<std::string, pb::Tensor> sorted(response.jacobians().begin(), response.jacobians().end());
      for (const auto& [out, t] : sorted) {
        std::string label = "d" + out + "/d" + in.name();
        std::printf("BatchJacobian %s: %s%s = %s\n", model.c_str(), label.c_str(), ShapeText(t.shape()).c_str(), Preview(t.data()).c_str());
        jacobians[label] = t;
      }
    }

    // Reading an error status: an unknown model is NOT_FOUND, with a message saying which.
    pb::GetModelRequest unknown;
    unknown.set_model("no_such_model");
    pb::ModelInfo none;
    grpc::Status status = TryCall(&pb::JacobianService::Stub::GetModel, unknown, &none);
    bool not_found_ok = status.error_code() == grpc::StatusCode::NOT_FOUND;
    if (status.ok())
      std::printf("GetModel no_such_model: succeeded, expected NOT_FOUND\n");
    else
      std::printf("GetModel no_such_model: %s: %s\n", StatusName(status.error_code()).c_str(), status.error_message().c_str());

    if (o_.loop > 0) TimeJacobians(model, info, inputs);
    if (!ref) return not_found_ok ? 0 : 1;
    return Check(outputs, jacobians, *ref, not_found_ok);
  }

 private:
  template <typename Request, typename Response>
  using Method = grpc::Status (pb::JacobianService::Stub::*)(grpc::ClientContext*, const Request&, Response*);

  // Each call gets its own deadline; the server sees it too and drops the request if it expires while queued.
  template <typename Request, typename Response>
  grpc::Status TryCall(Method<Request, Response> method, const Request& request, Response* response) {
    grpc::ClientContext context;
    context.set_deadline(Deadline(o_.timeout_seconds));
    return (stub_.get()->*method)(&context, request, response);
  }

  template <typename Request, typename Response>
  void Call(Method<Request, Response> method, const Request& request, Response* response) {
    grpc::Status status = TryCall(method, request, response);
    if (!status.ok()) throw CallFailed(status);
  }

  // What a control loop does: one sample's Jacobian at a time, each call waiting for the one before. The first sample
  // of the inputs, with respect to the first float input; the first tenth of the calls warm up and are not timed.
  void TimeJacobians(const std::string& model, const pb::ModelInfo& info, const std::map<std::string, pb::Tensor>& batch) {
    pb::JacobianRequest request;
    request.set_model(model);
    for (const auto& in : info.inputs())
      if (in.dtype() == "float") { request.set_wrt(in.name()); break; }
    for (const auto& [name, t] : batch) {
      pb::Tensor& sample = (*request.mutable_inputs())[name];
      sample.mutable_shape()->Add(t.shape().begin() + 1, t.shape().end());
      int64_t size = 1;
      for (int i = 1; i < t.shape_size(); i++) size *= t.shape(i);
      sample.mutable_data()->Add(t.data().begin(), t.data().begin() + size);
    }
    int warmup = o_.loop / 10;
    std::vector<double> micros;
    micros.reserve(o_.loop);
    for (int i = 0; i < warmup + o_.loop; i++) {
      pb::JacobianResponse response;
      auto start = Clock::now();
      Call(&pb::JacobianService::Stub::Jacobian, request, &response);
      if (i >= warmup) micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) { return micros[std::min(micros.size() - 1, static_cast<size_t>(q * micros.size()))]; };
    std::printf("Jacobian loop %s: %d calls one at a time (after %d to warm up), p50 %.0f us, p99 %.0f us, max %.0f us\n",
                model.c_str(), o_.loop, warmup, at(0.5), at(0.99), micros.back());
  }

  int Check(const std::map<std::string, pb::Tensor>& outputs, const std::map<std::string, pb::Tensor>& jacobians,
            const Reference& ref, bool not_found_ok) {
    std::vector<std::string> failures;
    if (!not_found_ok) failures.push_back("GetModel no_such_model did not answer NOT_FOUND");
    struct Expectation {
      std::string label;
      const pb::Tensor* got;
      const RefTensor* want;
    };
    auto find = [](const std::map<std::string, pb::Tensor>& m, const std::string& key) {
      auto it = m.find(key);
      return it == m.end() ? nullptr : &it->second;
    };
    std::vector<Expectation> expected;
    for (const auto& [name, want] : ref.outputs) expected.push_back({name, find(outputs, name), &want});
    for (const auto& [wrt, outs] : ref.jacobians)
      for (const auto& [out, want] : outs) {
        std::string label = "d" + out + "/d" + wrt;
        expected.push_back({label, find(jacobians, label), &want});
      }
    for (const auto& e : expected) {
      auto [ok, detail] = Compare(e.got, *e.want, o_.tolerance);
      std::printf("%s %s: %s\n", ok ? "match" : "MISMATCH", e.label.c_str(), detail.c_str());
      if (!ok) failures.push_back(e.label + ": " + detail);
    }
    if (!failures.empty()) {
      std::printf("FAIL: %zu problem(s) against %s:\n", failures.size(), ref.path.c_str());
      for (const auto& f : failures) std::printf("  %s\n", f.c_str());
      return 1;
    }
    std::printf("PASS: %zu outputs and Jacobians of %s match %s (max abs error <= %g x largest |reference| entry)\n",
                expected.size(), ref.model.c_str(), ref.path.c_str(), o_.tolerance);
    return 0;
  }

  std::unique_ptr<pb::JacobianService::Stub> stub_;
  Options o_;
};

// Plaintext HTTP/2 unless a TLS file is given; then TLS with only the given CAs (the system's without --ca),
// presenting the client certificate if there is one.
std::shared_ptr<grpc::ChannelCredentials> Credentials(const Options& o) {
  if (o.ca.empty() && o.cert.empty() && o.key.empty()) return grpc::InsecureChannelCredentials();
  if (o.cert.empty() != o.key.empty()) throw std::runtime_error("--cert and --key go together");
  grpc::SslCredentialsOptions ssl;
  if (!o.ca.empty()) ssl.pem_root_certs = ReadFile(o.ca);
  if (!o.cert.empty()) {
    ssl.pem_cert_chain = ReadFile(o.cert);
    ssl.pem_private_key = ReadFile(o.key);
  }
  return grpc::SslCredentials(ssl);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("usage: jacclient [--target HOST:PORT] [--model NAME] [--reference FILE] [--tolerance X] [--timeout SECONDS]\n"
                  "                 [--loop N] [--ca FILE] [--cert FILE --key FILE]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::runtime_error(flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--target") o.target = value;
    else if (flag == "--model") o.model = value;
    else if (flag == "--reference") o.reference = value;
    else if (flag == "--ca") o.ca = value;
    else if (flag == "--cert") o.cert = value;
    else if (flag == "--key") o.key = value;
    else if (flag == "--tolerance") o.tolerance = std::stod(value);
    else if (flag == "--timeout") o.timeout_seconds = std::stod(value);
    else if (flag == "--loop") o.loop = std::stoi(value);
    else throw std::runtime_error("unknown option " + flag + " (--help lists them)");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::optional<Reference> ref;
  std::shared_ptr<grpc::Channel> channel;
  try {
    o = Parse(argc, argv);
    if (!o.reference.empty()) ref = LoadReference(o.reference);
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
    arguments.SetMaxSendMessageSize(kMaxMessageBytes);
    channel = grpc::CreateCustomChannel(o.target, Credentials(o), arguments);
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    return 2;
  }
  if (!channel->WaitForConnected(Deadline(o.timeout_seconds))) {
    std::printf("ERROR: no server at %s within %g s\n", o.target.c_str(), o.timeout_seconds);
    return 2;
  }
  std::string model = !o.model.empty() ? o.model : ref ? ref->model : "pinn";
  try {
    return Example(channel, o).Run(model, ref);
  } catch (const CallFailed& e) {
    // Every failed call carries a status code and a message from the server.
    std::printf("ERROR: call failed: %s: %s\n", StatusName(e.status.error_code()).c_str(), e.status.error_message().c_str());
    return 2;
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    return 2;
  }
}
