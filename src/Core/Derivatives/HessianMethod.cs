namespace JacService.Core.Derivatives;

/// <summary>How <see cref="SecondOrderMode"/> computes a Hessian (the tests and benchmarks name one to compare them).</summary>
internal enum HessianMethod
{
    /// <summary>Contracted where the graph allows it, else forward.</summary>
    Auto,
    /// <summary>Every entry carried as a second-order direction through the whole graph.</summary>
    Forward,
    /// <summary>Curvature terms contracted with reverse-mode cotangents at each non-linear node.</summary>
    Contracted,
}
