namespace JacService.Core.Compiled;

/// <summary>Names of the output tangents a node's compiled JVP rule wrote (null: the output carries none).</summary>
internal delegate string?[] CompiledJvp(OnnxRuleContext c);

/// <summary>Names of the input cotangents a node's compiled VJP rule wrote (null: not needed or not reached).</summary>
internal delegate string?[] CompiledVjp(OnnxRuleContext c);

/// <summary>
/// An op's derivative as ONNX nodes, for derivative graphs ONNX Runtime runs (<see cref="DerivativeGraphWriter"/>): the
/// same JVP and VJP as the row's TorchSharp rules, written as graph nodes instead of computed.
/// </summary>
internal sealed record CompiledRule(CompiledJvp Jvp, CompiledVjp Vjp);
