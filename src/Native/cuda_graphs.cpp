// CUDA graph capture and replay for JacService's engine: the few libtorch calls TorchSharp does not expose.
//
// How the managed side uses it (src/Core/Graphs/CapturedPasses.cs), all on one executor thread:
//   side = jac_side_stream_begin(device)      every later libtorch call of this thread runs on a pool stream
//   ... eager warm-up passes ...               cuBLAS and cuDNN set up their per-stream state outside the capture
//   g = jac_graph_new(device); jac_graph_capture_begin(g)
//   ... one pass on static input tensors ...   recorded, not run; its tensors come from the graph's private pool
//   jac_graph_capture_end(g)                   instantiates the graph
//   jac_side_stream_end(side)                  waits for the side stream, back to the thread's previous stream
//   then per batch: copy into the static inputs, jac_graph_replay(g), read the static outputs.
//
// Every function returns 0 on success and -1 on failure, with the reason in jac_last_error() (per thread): no C++
// exception crosses into .NET, where it would end the process.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <exception>
#include <string>
#include <utility>

#define JAC_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

thread_local std::string last_error;

template <class F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "a C++ exception that is not a std::exception";
  }
  return -1;
}

// The thread's stream before the side stream was made current, to restore it.
struct SideStream {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
};

// A graph and the device it captures on (libtorch takes the capture's device from the thread's current device).
struct Graph {
  explicit Graph(c10::DeviceIndex index) : device(index) {}
  c10::DeviceIndex device;
  at::cuda::CUDAGraph graph;
};

}  // namespace

JAC_EXPORT const char* jac_last_error() { return last_error.c_str(); }

// Version of this library's C API; the managed side refuses a library whose version it does not know.
JAC_EXPORT int jac_graphs_api_version() { return 2; }

// Makes `device` this thread's current CUDA device. With several GPUs the server's default device is "cuda" with no
// index, which libtorch resolves per thread to the current device: an executor thread bound here creates its tensors
// on its own GPU, and the loader binds itself to each GPU in turn while it loads that GPU's replica.
JAC_EXPORT int jac_set_device(int device) {
  return guarded([&] { c10::cuda::set_device(static_cast<c10::DeviceIndex>(device)); });
}

// Capture refuses the legacy default stream, and warm-up must run on the stream that captures: a pool stream is made
// current for this thread on `device` until jac_side_stream_end.
JAC_EXPORT int jac_side_stream_begin(int device, void** handle) {
  return guarded([&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    c10::cuda::CUDAGuard guard(index);
    auto previous = c10::cuda::getCurrentCUDAStream(index);
    auto side = c10::cuda::getStreamFromPool(false, index);
    // Work queued on the previous stream (the static inputs' copies) must be done before the side stream reads it.
    previous.synchronize();
    c10::cuda::setCurrentCUDAStream(side);
    *handle = new SideStream{previous, side};
  });
}

JAC_EXPORT int jac_side_stream_end(void* handle) {
  auto* scope = static_cast<SideStream*>(handle);
  int status = guarded([&] {
    scope->side.synchronize();
    c10::cuda::setCurrentCUDAStream(scope->previous);
  });
  delete scope;
  return status;
}

JAC_EXPORT int jac_graph_new(int device, void** graph) {
  return guarded([&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    c10::cuda::CUDAGuard guard(index);
    *graph = new Graph(index);
  });
}

// Thread-local capture mode: the other executors' threads keep allocating and launching on their own streams while
// this one captures; global mode would fail their calls.
JAC_EXPORT int jac_graph_capture_begin(void* graph) {
  return guarded([&] {
    auto* g = static_cast<Graph*>(graph);
    c10::cuda::CUDAGuard guard(g->device);
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  });
}

// Also called after a pass failed inside the capture, to take the stream out of capture mode; the graph is then
// discarded (jac_graph_free) and the pass runs eagerly. (libtorch keeps what the failed capture allocated in its
// pool: once per shape that cannot be captured.)
JAC_EXPORT int jac_graph_capture_end(void* graph) {
  return guarded([&] {
    auto* g = static_cast<Graph*>(graph);
    c10::cuda::CUDAGuard guard(g->device);
    g->graph.capture_end();
  });
}

// Launches on the thread's current stream of the graph's device: the copies into the static inputs before it and
// the reads of the static outputs after it are ordered on that same stream.
JAC_EXPORT int jac_graph_replay(void* graph) {
  return guarded([&] {
    auto* g = static_cast<Graph*>(graph);
    c10::cuda::CUDAGuard guard(g->device);
    g->graph.replay();
  });
}

// Called from whichever thread frees the model version: the graph's own device is made current while it is destroyed.
JAC_EXPORT int jac_graph_free(void* graph) {
  return guarded([&] {
    auto* g = static_cast<Graph*>(graph);
    c10::cuda::CUDAGuard guard(g->device);
    delete g;
  });
}
