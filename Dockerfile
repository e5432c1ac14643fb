# JacService image: gRPC (h2c) on 50051, Prometheus metrics on 9464, models from /models.
#
#   CPU (default):  docker build -t jacservice .
#   CUDA:           docker build -t jacservice:cuda --build-arg TORCH_BACKEND=cuda \
#                     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#                     --build-arg NATIVE_BUILD_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04 .
#
# Plain Dockerfile syntax on purpose: it must build with the legacy builder too (no BuildKit-only features).

# Runtime base. The CUDA variant's base has no .NET, so that build publishes self-contained (see below).
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0
# Where the CUDA graph library (src/Native) is built: a CUDA devel image for TORCH_BACKEND=cuda. The CPU build does
# nothing in that stage, so its default is an image the CPU build pulls anyway.
ARG NATIVE_BUILD_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0

# libJacServiceCudaGraphs for TORCH_BACKEND=cuda: compiled against libtorch's C++ distribution of the version
# TorchSharp ships (its headers and CMake config; the NuGet package has the shared libraries only) and the CUDA
# toolkit's headers, then placed beside the server, which finds it at start. Without it (CPU) passes run eagerly.
FROM $NATIVE_BUILD_IMAGE AS native
ARG TORCH_BACKEND=cpu
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu128/libtorch-shared-with-deps-2.10.0%2Bcu128.zip
COPY src/Native/ /src/Native/
RUN mkdir -p /out && if [ "$TORCH_BACKEND" = cuda ]; then \
      apt-get update && apt-get install -y --no-install-recommends cmake ninja-build g++ curl unzip ca-certificates \
      && curl -fsSL -o /tmp/libtorch.zip "$LIBTORCH_URL" && unzip -q /tmp/libtorch.zip -d /opt && rm /tmp/libtorch.zip \
      && cmake -S /src/Native -B /tmp/native -G Ninja -DCMAKE_PREFIX_PATH=/opt/libtorch \
      && cmake --build /tmp/native && cp /tmp/native/libJacServiceCudaGraphs.so /out/; fi

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
# cpu: TorchSharp + libtorch-cpu-linux-x64 (linux-x64 natives only); cuda: TorchSharp-cuda-linux.
ARG TORCH_BACKEND=cpu
WORKDIR /src

# Restore from the project files alone, so a code change reuses the (large) restored-packages layer.
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
COPY src/Protos/JacService.Protos.csproj src/Protos/
COPY src/Core/JacService.Core.csproj src/Core/
COPY src/Server/JacService.Server.csproj src/Server/
COPY src/HealthProbe/JacService.HealthProbe.csproj src/HealthProbe/
RUN if [ "$TORCH_BACKEND" = cuda ]; then sc=true; else sc=false; fi \
 && dotnet restore src/Server/JacService.Server.csproj -p:TorchBackend=$TORCH_BACKEND -p:SelfContained=$sc \
 && dotnet restore src/HealthProbe/JacService.HealthProbe.csproj -p:SelfContained=$sc

COPY src/Protos/ src/Protos/
COPY src/Core/ src/Core/
COPY src/Server/ src/Server/
COPY src/HealthProbe/ src/HealthProbe/
# The publish step runs the GLIBCXX patch on libLibTorchSharp.so (Directory.Build.targets), as the build does.
# libtorch ships libraries TorchSharp never loads (Python bindings, test and mobile backends): ~35 MB dropped.
RUN if [ "$TORCH_BACKEND" = cuda ]; then sc=true; else sc=false; fi \
 && dotnet publish src/Server/JacService.Server.csproj -c Release --no-restore -p:TorchBackend=$TORCH_BACKEND -p:SelfContained=$sc -o /out/app \
 && dotnet publish src/HealthProbe/JacService.HealthProbe.csproj -c Release --no-restore -p:SelfContained=$sc -o /out/app/probe \
 && cd /out/app && rm -f libtorch_python.so libtorchbind_test.so libjitbackend_test.so libbackend_with_compiler.so \
      libnnapi_backend.so libaoti_custom_ops.so


FROM $RUNTIME_IMAGE
# The aspnet image already has the non-root 'app' user (UID 1654); a CUDA base image does not.
ARG APP_UID=1654
RUN getent passwd $APP_UID >/dev/null || useradd --uid $APP_UID --user-group --no-create-home app

# The example repository is the default; mount a repository over /models to serve your own.
COPY models/ /models/
COPY --from=build /out/app/ /app/
COPY --from=native /out/ /app/
WORKDIR /app

# Urls (not ASPNETCORE_URLS): appsettings.json sets Urls, and it outranks ASPNETCORE_-prefixed variables.
ENV Urls=http://0.0.0.0:50051 \
    Models__Root=/models \
    Telemetry__MetricsUrl=http://0.0.0.0:9464 \
    ASPNETCORE_HTTP_PORTS= \
    OTEL_SERVICE_NAME=jacservice
EXPOSE 50051 9464
USER $APP_UID

# Cold start loads libtorch and plans every model; the start period covers it before failures count.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["/app/probe/JacService.HealthProbe"]
# The apphost works for both variants (framework-dependent or self-contained). SIGTERM (docker stop, Kubernetes)
# makes the server refuse new calls and finish queued ones within Batching:DrainSeconds.
ENTRYPOINT ["/app/JacService.Server"]
