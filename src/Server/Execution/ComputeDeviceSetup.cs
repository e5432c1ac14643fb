using JacService.Core.Models;
using Microsoft.Extensions.Options;

namespace JacService.Server.Execution;

/// <summary>
/// Makes Engine:Device (resolved, see <see cref="ComputeDevices"/>) the device every tensor is created on, and on a GPU
/// sets whether TF32 may stand in for float32 (Engine:AllowTf32), before any model loads (registered before the repository loader, like <see cref="MklDispatchSetup"/>).
/// </summary>
public sealed partial class ComputeDeviceSetup(IOptions<EngineOptions> options, EngineLimits limits, ILogger<ComputeDeviceSetup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        ComputeDevices.Use(limits.Devices);
        if (limits.Device != ComputeDevices.Cpu)
        {
            TorchSharp.torch.backends.cuda.matmul.allow_tf32 = options.Value.AllowTf32;
            TorchSharp.torch.backends.cudnn.allow_tf32 = options.Value.AllowTf32;
        }
        LogDevice(logger, string.Join(", ", limits.Devices), options.Value.Device, ComputeDevices.CudaDevices());
        // As resolved once into the engine's limits, which every model version reads.
        LogGraphs(logger, limits.CudaGraphs ? "recorded and replayed" : "off", options.Value.CudaGraphs,
            limits.CudaGraphs ? "" : $": {limits.CudaGraphsNote}");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Tensors live on {Device} (Engine:Device {Setting}; GPUs visible to libtorch: {Gpus})")]
    private static partial void LogDevice(ILogger logger, string device, string setting, int gpus);

    [LoggerMessage(Level = LogLevel.Information, Message = "CUDA graphs {State} (Engine:CudaGraphs {Setting}){Reason}")]
    private static partial void LogGraphs(ILogger logger, string state, Core.Graphs.CudaGraphsSetting setting, string reason);
}
