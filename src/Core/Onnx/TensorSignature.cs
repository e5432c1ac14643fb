namespace JacService.Core.Onnx;

/// <summary>A named graph input or output as the model declares it (-1 for dynamic axes).</summary>
public sealed record TensorSignature(string Name, ElementType ElementType, long[] Shape);
