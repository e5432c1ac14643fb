namespace JacService.Core.Models;

/// <summary>What <see cref="MklDispatch.IgnoreCpuVendor"/> did.</summary>
public enum MklDispatchOutcome
{
    /// <summary>MKL now takes its Intel code paths (chosen by feature flags) on this non-Intel CPU.</summary>
    Applied,
    /// <summary>An Intel CPU: MKL already uses its best kernels.</summary>
    IntelAlready,
    /// <summary>Not an x86 CPU: MKL is not in play.</summary>
    NotX86,
    /// <summary>libtorch_cpu.so was not found beside TorchSharp.</summary>
    NoLibTorch,
    /// <summary>This libtorch has no MKL (it exports no vendor check).</summary>
    NoMkl,
    /// <summary>The vendor check's code is not the shape this was written against: left as it is.</summary>
    UnknownMklBuild,
}
