using System.Reflection;
using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Protos.Inference;
using JacService.Server.Admission;
using JacService.Server.Grpc;
using JacService.Server.Models;

namespace JacService.Server.Inference;

/// <summary>
/// The Open Inference Protocol's (KServe v2) calls over the same registry, validation and micro-batcher as
/// JacobianService, in the protocol's gRPC messages, which both of its bindings answer with: the gRPC service
/// (<see cref="InferenceGrpcService"/>) as they are, the HTTP/REST one (<see cref="OpenInferenceRest"/>) translated from and
/// to JSON. ModelInfer is Predict, or BatchJacobian, BatchHessian or BatchLaplacian when its "jacservice.*" parameters ask
/// (docs/open-inference.md). Errors are the exceptions JacobianService's calls throw.
/// </summary>
public sealed class OpenInferenceCalls(ModelRegistry registry, IHostApplicationLifetime lifetime, TimeProvider clock)
{
    /// <summary>
    /// Triton's request parameter (its schedule policy extension; tritonclient's infer(timeout=...)): microseconds a request
    /// may wait before it is computed, 0 for no limit. A request still queued then is refused DEADLINE_EXCEEDED; one being
    /// computed finishes.
    /// </summary>
    public const string TimeoutKey = "timeout";

    public const string ServerName = "jacservice";
    public const string Platform = "onnx_onnxv1";

    /// <summary>What ServerMetadata announces beyond the protocol: derivatives through ModelInfer's parameters.</summary>
    public const string DerivativesExtension = "jacservice_derivatives";

    /// <summary>Triton's extension of the HTTP/REST binding: tensor data as bytes after the JSON (<see cref="InferRequestJson"/>).</summary>
    public const string BinaryDataExtension = "binary_tensor_data";

    private static readonly string ServerVersion =
        (typeof(OpenInferenceCalls).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "").Split('+')[0];

    /// <summary>Ready as grpc.health.v1 says SERVING: the repository found at start has loaded and the server is not stopping.</summary>
    public bool ServerReady() => registry.RepositoryLoaded && !lifetime.ApplicationStopping.IsCancellationRequested;

    /// <summary>Whether the version GetModel would describe is READY; an unknown model or version is not ready, not an error.</summary>
    public bool ModelReady(string name, string version)
    {
        try
        {
            return registry.Find(name, version).State == ModelState.Ready;
        }
        catch (ModelNotFoundException)
        {
            return false;
        }
    }

    public ServerMetadataResponse ServerMetadata() => new() { Name = ServerName, Version = ServerVersion, Extensions = { DerivativesExtension, BinaryDataExtension } };

    /// <summary>
    /// The version GetModel describes, with its tensors as GetModel lists them (-1 for a dynamic axis) and the READY
    /// versions of the model; a version still loading or failed is refused as a call to it would be.
    /// </summary>
    public ModelMetadataResponse ModelMetadata(string name, string version)
    {
        var entry = registry.Find(name, version);
        var model = entry.State switch
        {
            ModelState.Ready => entry.Model!,
            ModelState.Loading => throw new ModelUnavailableException($"model '{entry.Name}' version {entry.Version} is still loading"),
            _ => throw new ModelFailedException($"model '{entry.Name}' version {entry.Version} failed to load: {entry.Error}"),
        };
        var response = new ModelMetadataResponse { Name = entry.Name, Platform = Platform };
        response.Versions.AddRange(registry.Entries.Where(e => e.Name == entry.Name && e.State == ModelState.Ready)
            .OrderBy(e => e.Version).Select(e => e.Version.ToString()));
        response.Inputs.AddRange(model.Inputs.Select(Describe));
        response.Outputs.AddRange(model.Outputs.Select(Describe));
        response.Properties["version"] = entry.Version.ToString();
        response.Properties["opset"] = model.Graph.Opset.ToString();
        response.Properties["default_mode"] = entry.DefaultMode.ToString().ToLowerInvariant();
        return response;
    }

    private static ModelMetadataResponse.Types.TensorMetadata Describe(Core.Onnx.TensorSignature signature)
    {
        var tensor = new ModelMetadataResponse.Types.TensorMetadata { Name = signature.Name, Datatype = InferDatatype.Of(signature.ElementType) };
        tensor.Shape.AddRange(signature.Shape);
        return tensor;
    }

    /// <summary>
    /// <paramref name="deadline"/>: when the caller stops waiting (null: never); <paramref name="memory"/>: the call's hold on
    /// the call memory budget, which the result joins (null where the call holds none); <paramref name="rawOutputs"/>: the
    /// outputs' values as raw_output_contents, else as fp32_contents.
    /// </summary>
    public async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, DateTimeOffset? deadline, CancellationToken cancellation, CallMemory? memory,
        bool rawOutputs)
    {
        var derivative = DerivativeParameters.From(request.Parameters);
        deadline = Earlier(deadline, TimeoutOf(request.Parameters));
        var inputs = InferInputs.Decode(request);
        var (model, results, mode) = derivative.Kind == DerivativeKind.None
            ? await Predict(request, inputs, deadline, cancellation, memory)
            : derivative.Kind == DerivativeKind.Jacobian
                ? await Jacobian(request, inputs, derivative, deadline, cancellation, memory)
                : await SecondOrder(request, inputs, derivative, deadline, cancellation, memory);
        var response = new ModelInferResponse { ModelName = model.Name, ModelVersion = model.Version.ToString(), Id = request.Id };
        if (mode is { } ran)
            response.Parameters[DerivativeParameters.ModeKey] = new InferParameter { StringParam = ran.ToString().ToLowerInvariant() };
        InferOutputs.Fill(response, results, request.Outputs, rawOutputs);
        // The response holds copies, and the batch is done with the inputs: the call's large arrays go back now.
        CallArrays.ReturnNow([.. inputs.Values, .. results.Select(r => r.Value)]);
        return response;
    }

    private DateTimeOffset? TimeoutOf(Google.Protobuf.Collections.MapField<string, InferParameter> parameters)
    {
        if (!parameters.TryGetValue(TimeoutKey, out var timeout)) return null;
        if (timeout.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.Int64Param || timeout.Int64Param < 0)
            throw new InvalidRequestException($"parameter {TimeoutKey} must be an int64_param of 0 or more microseconds (0: no limit), got {timeout}");
        // A limit past the year 9999 is none (and would not fit a DateTimeOffset).
        var now = clock.GetUtcNow();
        return timeout.Int64Param == 0 || timeout.Int64Param >= (DateTimeOffset.MaxValue - now).Ticks / TimeSpan.TicksPerMicrosecond
            ? null
            : now + TimeSpan.FromMicroseconds(timeout.Int64Param);
    }

    private static DateTimeOffset? Earlier(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a < b ? a : b;

    private async Task<(ModelVersion, List<KeyValuePair<string, HostTensor>>, DerivativeMode?)> Predict(
        ModelInferRequest request, Dictionary<string, HostTensor> inputs, DateTimeOffset? deadline, CancellationToken cancellation, CallMemory? memory)
    {
        using var lease = registry.Acquire(request.ModelName, request.ModelVersion);
        var model = lease.Entry.Model!;
        var host = model.ValidateInputs(inputs, batched: true);
        var result = await PredictCall.SubmitAsync(lease.Entry, host, deadline, cancellation, memory);
        return (model, [.. InModelOrder(model, result.Outputs)], null);
    }

    private async Task<(ModelVersion, List<KeyValuePair<string, HostTensor>>, DerivativeMode?)> Jacobian(
        ModelInferRequest request, Dictionary<string, HostTensor> inputs, DerivativeParameters derivative, DateTimeOffset? deadline,
        CancellationToken cancellation, CallMemory? memory)
    {
        using var call = JacobianCall.Prepare(registry, request.ModelName, request.ModelVersion, inputs, derivative.Wrt, derivative.Of,
            derivative.Mode, batched: true);
        var result = await call.SubmitAsync(deadline, cancellation, memory);
        string wrt = call.Model.Inputs[call.Wrt].Name;
        return (call.Model, [.. InModelOrder(call.Model, result.Outputs), .. Named(call.Model, result.Jacobians, DerivativeKind.Jacobian, wrt)], result.Mode);
    }

    private async Task<(ModelVersion, List<KeyValuePair<string, HostTensor>>, DerivativeMode?)> SecondOrder(
        ModelInferRequest request, Dictionary<string, HostTensor> inputs, DerivativeParameters derivative, DateTimeOffset? deadline,
        CancellationToken cancellation, CallMemory? memory)
    {
        var kind = derivative.Kind == DerivativeKind.Hessian ? SecondOrderKind.Hessian : SecondOrderKind.Laplacian;
        using var call = SecondOrderCall.Prepare(registry, request.ModelName, request.ModelVersion, inputs, derivative.Wrt, derivative.Of,
            kind, derivative.IncludeJacobian, derivative.Axes);
        var result = await call.SubmitAsync(deadline, cancellation, memory);
        string wrt = call.Model.Inputs[call.Model.ResolveWrt(derivative.Wrt)].Name;
        List<KeyValuePair<string, HostTensor>> results = [.. InModelOrder(call.Model, result.Outputs), .. Named(call.Model, result.SecondOrder, derivative.Kind, wrt)];
        if (derivative.IncludeJacobian) results.AddRange(Named(call.Model, result.Jacobians, DerivativeKind.Jacobian, wrt));
        return (call.Model, results, null);
    }

    /// <summary>Derivatives per output, named for the response, in the order the model declares its outputs.</summary>
    private static IEnumerable<KeyValuePair<string, HostTensor>> Named(ModelVersion model, IReadOnlyDictionary<string, HostTensor> perOutput,
        DerivativeKind kind, string wrt) =>
        InModelOrder(model, perOutput).Select(p => KeyValuePair.Create(DerivativeOutputNames.Of(p.Key, kind, wrt), p.Value));

    // The engine's dictionaries have no promised order; a response lists tensors as the model declares its outputs.
    private static IEnumerable<KeyValuePair<string, HostTensor>> InModelOrder(ModelVersion model, IReadOnlyDictionary<string, HostTensor> perOutput) =>
        model.Outputs.Where(o => perOutput.ContainsKey(o.Name)).Select(o => KeyValuePair.Create(o.Name, perOutput[o.Name]));
}
