using JacService.Protos.V1;

namespace JacService.Protos.Inference;

// The Open Inference Protocol's requests name their model too, so metrics and logs can count them by model.

public sealed partial class ModelInferRequest : IModelRequest
{
    string IModelRequest.Model => ModelName;
}

public sealed partial class ModelMetadataRequest : IModelRequest
{
    string IModelRequest.Model => Name;
}

public sealed partial class ModelReadyRequest : IModelRequest
{
    string IModelRequest.Model => Name;
}
