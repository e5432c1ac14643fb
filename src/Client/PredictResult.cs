namespace JacService.Client;

/// <summary>Outputs of a Predict call, by output name, with the batch axis first.</summary>
public sealed record PredictResult(string Model, string Version, IReadOnlyDictionary<string, FloatTensor> Outputs);
