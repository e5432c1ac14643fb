namespace JacService.Protos.V1;

/// <summary>A request addressed to one model, so cross-cutting code (metrics, logs) can name the model.</summary>
public interface IModelRequest
{
    string Model { get; }
}

public sealed partial class PredictRequest : IModelRequest;

public sealed partial class JacobianRequest : IModelRequest;

public sealed partial class BatchJacobianRequest : IModelRequest;

public sealed partial class GetModelRequest : IModelRequest;

public sealed partial class JvpRequest : IModelRequest;

public sealed partial class VjpRequest : IModelRequest;

public sealed partial class BatchHessianRequest : IModelRequest;

public sealed partial class BatchLaplacianRequest : IModelRequest;
