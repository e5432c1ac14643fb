namespace JacService.Core.Models;

/// <summary>
/// What one model file may hold. Each limit is checked before the memory or work it bounds is spent, so a hostile or
/// broken file is refused with the limit it broke (docs/security.md, "Hostile model files"). Messages name the
/// server's setting (section Limits) that sets each one.
/// </summary>
public sealed record ModelLimits
{
    /// <summary>Largest model.onnx read; the whole file is read, then parsed, so loading takes about twice its size.</summary>
    public long MaxFileBytes { get; init; } = 1L << 30;

    /// <summary>Deepest nesting of protobuf messages the parser follows (subgraphs in attributes nest without end).</summary>
    public int MaxNestingDepth { get; init; } = 32;

    /// <summary>Most nodes in the file: the graph's, plus any in subgraphs and functions.</summary>
    public int MaxNodes { get; init; } = 100_000;

    /// <summary>Longest chain of nodes, each consuming the one before: a pass runs them one after another.</summary>
    public int MaxGraphDepth { get; init; } = 10_000;

    /// <summary>Largest tensor (initializer or Constant value) in bytes as held on the device, from its declared dims.</summary>
    public long MaxTensorBytes { get; init; } = 512L << 20;

    /// <summary>All tensors of the file together, in bytes as held on the device.</summary>
    public long MaxInitializerBytes { get; init; } = 1L << 30;

    /// <summary>
    /// Elements of all values one sample's pass computes (inputs and every node's outputs); a plan for a batch of B may
    /// hold B times as many. Checked while planning, before each allocation whose size an op can tell in advance.
    /// </summary>
    public long MaxPlannedElements { get; init; } = 1L << 28;

    /// <summary>Longest string anywhere in the file (names, op types, doc strings, string attributes), in UTF-8 bytes.</summary>
    public int MaxStringBytes { get; init; } = 64 << 10;

    /// <summary>Most values in one attribute list (ints, floats, strings, tensors, graphs), and most attributes on one node.</summary>
    public int MaxAttributeElements { get; init; } = 100_000;
}
